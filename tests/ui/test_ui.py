"""The web UI in a real headless Chromium against a real `registry agent -dev`: every view
by deep link, live updates through blocking queries, the KV editor's writes and its
check-and-set conflict message, sessions and locks, axe-core's WCAG 2 A/AA rules on every
view, and screenshots at laptop and phone sizes (kept under tests/ui/artifacts/)."""

from __future__ import annotations

import http.client as httpclient
import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import Ui, http, start_registry, stop_registry, wait_for
from conftest import _shared as shared_conftest
from selenium.webdriver.common.by import By

LAPTOP = (1366, 768)
PHONE = (390, 844)


def api(agent, method, path, body=None):
    data = body if isinstance(body, (bytes, type(None))) else (
        body.encode() if isinstance(body, str) else json.dumps(body).encode())
    return http(method, agent.base_url + path, data)


def kv_raw(agent, key):
    status, _, body = api(agent, "GET", f"/v1/kv/{urllib.parse.quote(key)}?raw")
    return body.decode() if status == 200 else None


def raw_get(agent, path, headers=None):
    """A GET that follows no redirect: (status, headers, body)."""
    conn = httpclient.HTTPConnection("127.0.0.1", agent.http_port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def register_web(agent, name="web", port=8080):
    status, _, body = api(agent, "PUT", "/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": port, "Tags": ["v1", "blue"],
        "Check": {"CheckID": f"service:{name}", "Name": f"{name} TTL", "TTL": "10m"},
    })
    assert status == 200, body


def assert_layout(ui, rows_css: str, heading: str):
    """The loose layout comparison: landmarks, the page heading and the expected rows."""
    d = ui.driver
    assert d.find_elements(By.CSS_SELECTOR, "header.top"), "banner missing"
    assert d.find_elements(By.CSS_SELECTOR, 'nav[aria-label="Main"] a[aria-current="page"]') or \
        "/kv/" in d.current_url or "/login" in d.current_url, "current section not marked"
    main = d.find_element(By.CSS_SELECTOR, "main#main")
    assert main.is_displayed()
    h1 = ui.wait_css("main h1")
    assert heading in h1.text, f"heading {h1.text!r}"
    if rows_css:
        ui.wait_css(rows_css)
    # Nothing wider than the viewport (no sideways scrolling).
    over = d.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert over <= 1, f"page is {over}px wider than the viewport"


def test_root_redirects_to_the_ui_and_assets_are_cacheable(agent):
    status, headers, _ = raw_get(agent, "/")
    assert status == 301 and headers["location"] == "/ui/"
    status, headers, _ = raw_get(agent, "/ui")
    assert status == 301 and headers["location"] == "/ui/"
    status, headers, page = raw_get(agent, "/ui/dc1/services/web")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache" and headers["etag"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert raw_get(agent, "/ui/", {"If-None-Match": headers["etag"]})[0] == 304
    html = page.decode()
    assert '<main id="main"' in html and 'lang="en"' in html
    start = html.index('data-assets="') + len('data-assets="')
    assets = html[start : html.index('"', start)]
    assert assets.startswith("/ui/assets/")
    for name, ctype in [("app.js", "text/javascript"), ("app.css", "text/css"),
                        ("views/kv.js", "text/javascript"), ("favicon.svg", "image/svg+xml")]:
        status, headers, body = raw_get(agent, assets + name)
        assert status == 200 and headers["content-type"].startswith(ctype), (name, headers)
        assert headers["cache-control"] == "public, max-age=31536000, immutable" and body
        assert raw_get(agent, assets + name, {"If-None-Match": headers["etag"]})[0] == 304
        status, headers, gz = raw_get(agent, assets + name, {"Accept-Encoding": "gzip"})
        assert headers.get("content-encoding") == "gzip" and len(gz) < len(body)
    assert raw_get(agent, "/ui/assets/000000000000/app.js")[0] == 404
    assert raw_get(agent, "/v1/internal/ui/services")[0] == 200


def test_every_view_loads_by_deep_link_at_laptop_and_phone_sizes(ui, agent):
    register_web(agent, "deep", 9000)
    api(agent, "PUT", "/v1/kv/site/settings/colour", "teal")
    status, _, body = api(agent, "PUT", "/v1/session/create", {"Name": "deep-lock", "Node": agent.node})
    sid = json.loads(body)["ID"]
    assert api(agent, "PUT", f"/v1/kv/site/leader?acquire={sid}", "me")[2] == b"true"
    views = [
        ("services", "/ui/dc1/services", 'tr[data-service="deep"]', "Services"),
        ("service", "/ui/dc1/services/deep", 'article[data-instance="deep"] li.check', "deep"),
        ("nodes", "/ui/dc1/nodes", f'tr[data-node="{agent.node}"]', "Nodes"),
        ("node", f"/ui/dc1/nodes/{agent.node}", 'tr[data-service="deep"]', agent.node),
        ("kv-root", "/ui/dc1/kv/", 'tr[data-key="site/"]', "Key/Value"),
        ("kv-folder", "/ui/dc1/kv/site/settings/", 'tr[data-key="site/settings/colour"]', "settings"),
        ("kv-edit", "/ui/dc1/kv/site/settings/colour/edit", "textarea#kv-value", "colour"),
        ("kv-create", "/ui/dc1/kv/site/create", "input#kv-key", "Create key"),
        ("sessions", "/ui/dc1/sessions", f'tr[data-session="{sid}"]', "Sessions"),
        ("members", "/ui/dc1/members", f'tr[data-member="{agent.node}"]', "Members"),
    ]
    for size_name, (w, h), mobile in [("laptop", LAPTOP, False), ("phone", PHONE, True)]:
        ui.viewport(w, h, mobile)
        for name, path, rows, heading in views:
            ui.open(path)
            assert_layout(ui, rows, heading)
            if name == "kv-edit":
                ui.wait_js("return document.querySelector('#kv-value').value === 'teal'")
            if name == "sessions":
                assert "site/leader" in ui.text(f'tr[data-session="{sid}"]')
            ui.screenshot(f"{name}-{size_name}")
            violations = ui.accessibility_violations()
            assert not violations, f"{name} at {size_name}: {violations}"
    # The root of the UI lands on the services view; an unknown view says so.
    ui.open("/ui/")
    ui.wait_js("return location.pathname === '/ui/dc1/services'")
    ui.open("/ui/dc1/nope")
    assert "not found" in ui.text("main h1").lower()


def test_a_registered_service_and_its_check_status_appear_live(ui, agent):
    ui.open("/ui/dc1/services")
    ui.wait_css('tr[data-service="consul"]')
    ui.wait_js("return document.getElementById('conn').dataset.state === 'live'")
    ui.mark()
    # A keyboard user on a row keeps the focus there through live updates.
    ui.driver.execute_script("document.querySelector('tr[data-service=\"consul\"] a').focus()")
    register_web(agent, "live", 8081)
    # TTL checks start critical.
    row = ui.wait_css('tr[data-service="live"][data-health="critical"]')
    assert "1 critical" in row.text
    assert ui.driver.execute_script(
        "return document.activeElement.closest('tr').dataset.service") == "consul"
    assert api(agent, "PUT", "/v1/agent/check/pass/service:live?note=all+good")[0] == 200
    ui.wait_css('tr[data-service="live"][data-health="passing"]')
    ui.assert_same_page()
    # Into the service by its link, then the check fails with output while we watch.
    ui.driver.find_element(By.CSS_SELECTOR, 'tr[data-service="live"] a').click()
    ui.wait_css('article[data-instance="live"] li.check[data-status="passing"]')
    assert "all good" in ui.text('article[data-instance="live"] pre.output')
    assert api(agent, "PUT", "/v1/agent/check/fail/service:live?note=disk+full")[0] == 200
    ui.wait_css('article[data-instance="live"][data-health="critical"] li.check[data-status="critical"]')
    ui.wait_js("return document.querySelector('article[data-instance=\"live\"] pre.output').textContent === 'disk full'")
    ui.screenshot("service-live-critical")
    assert not ui.accessibility_violations()
    # Deregistered: the instance disappears, still without a reload.
    assert api(agent, "PUT", "/v1/agent/service/deregister/live")[0] == 200
    ui.wait_js("return document.body.textContent.includes('No instances of this service')")
    ui.assert_same_page()


def test_kv_create_edit_delete_through_the_ui(ui, agent):
    d = ui.driver
    ui.open("/ui/dc1/kv/")
    ui.wait_css("main h1")
    ui.mark()
    d.find_element(By.LINK_TEXT, "Create").click()
    key_input = ui.wait_css("input#kv-key")
    assert d.switch_to.active_element.tag_name == "h1", "focus moves to the new page's heading"
    key_input.send_keys("ui/app/config")
    d.find_element(By.CSS_SELECTOR, "textarea#kv-value").send_keys("version=1")
    d.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    ui.wait_js("return location.pathname === '/ui/dc1/kv/ui/app/config/edit'")
    wait_for("key created", lambda: kv_raw(agent, "ui/app/config") == "version=1", 10)
    # Edit and save (a CAS on the index the editor loaded).
    area = ui.wait_css("textarea#kv-value")
    ui.wait_js("return document.querySelector('#kv-value').value === 'version=1'")
    area.clear()
    area.send_keys("version=2")
    d.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    ui.wait_css(".notice.success")
    assert kv_raw(agent, "ui/app/config") == "version=2"
    # A second save right after the first still succeeds (the editor follows its own write).
    area.send_keys("\nmore")
    d.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    wait_for("second save", lambda: kv_raw(agent, "ui/app/config") == "version=2\nmore", 10)
    # The folder lists it; a key created over the API appears there live.
    ui.open("/ui/dc1/kv/ui/app/")
    ui.wait_css('tr[data-key="ui/app/config"]')
    ui.mark()
    api(agent, "PUT", "/v1/kv/ui/app/other", "x")
    ui.wait_css('tr[data-key="ui/app/other"]')
    # Delete through the editor, answering the confirmation.
    d.find_element(By.CSS_SELECTOR, 'tr[data-key="ui/app/config"] a').click()
    ui.wait_js("return document.querySelector('#kv-value') && document.querySelector('#kv-value').value.startsWith('version=2')")
    d.find_element(By.XPATH, "//form//button[normalize-space()='Delete']").click()
    d.switch_to.alert.accept()
    ui.wait_js("return location.pathname === '/ui/dc1/kv/ui/app/'")
    wait_for("key deleted", lambda: kv_raw(agent, "ui/app/config") is None, 10)
    ui.wait_gone('tr[data-key="ui/app/config"]')
    ui.assert_same_page()
    # Creating a key that exists is refused with a message (?cas=0).
    ui.open("/ui/dc1/kv/ui/app/create")
    ui.wait_css("input#kv-key").send_keys("other")
    d.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    assert "already exists" in ui.text('.notice.error')
    assert kv_raw(agent, "ui/app/other") == "x"
    # A folder, then deleting it recursively from its parent's list.
    ui.open("/ui/dc1/kv/ui/create")
    ui.wait_css("input#kv-key").send_keys("tmpdir/")
    d.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    ui.wait_js("return location.pathname === '/ui/dc1/kv/ui/tmpdir/'")
    assert api(agent, "GET", "/v1/kv/ui/tmpdir/")[0] == 200
    ui.open("/ui/dc1/kv/ui/")
    ui.wait_css('tr[data-key="ui/tmpdir/"] button').click()
    d.switch_to.alert.accept()
    ui.wait_gone('tr[data-key="ui/tmpdir/"]')
    assert api(agent, "GET", "/v1/kv/ui/tmpdir/")[0] == 404


def test_a_cas_conflict_is_explained_and_never_overwrites_silently(ui, agent):
    d = ui.driver
    api(agent, "PUT", "/v1/kv/conflict/key", "original")
    ui.open("/ui/dc1/kv/conflict/key/edit")
    ui.wait_js("return document.querySelector('#kv-value').value === 'original'")
    area = d.find_element(By.CSS_SELECTOR, "textarea#kv-value")
    area.send_keys(" + mine")
    # Someone else writes meanwhile; the editor notices without touching the user's text.
    api(agent, "PUT", "/v1/kv/conflict/key", "theirs")
    ui.wait_js("return document.body.textContent.includes('changed after you opened it')")
    assert area.get_attribute("value") == "original + mine"
    d.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    alert = ui.wait_css('.notice.error[role="alert"]')
    assert "changed by someone else" in alert.text and "theirs" in alert.text
    assert kv_raw(agent, "conflict/key") == "theirs", "the conflicting save must not land"
    ui.screenshot("kv-conflict-laptop")
    assert not ui.accessibility_violations()
    # Overwriting is a deliberate second step.
    d.find_element(By.XPATH, "//button[normalize-space()='Overwrite with my value']").click()
    ui.wait_css(".notice.success")
    assert kv_raw(agent, "conflict/key") == "original + mine"


def test_sessions_and_locks_live(ui, agent):
    ui.open("/ui/dc1/sessions")
    ui.wait_css("main h1")
    ui.mark()
    status, _, body = api(agent, "PUT", "/v1/session/create", {"Name": "live-lock", "Node": agent.node})
    sid = json.loads(body)["ID"]
    row = ui.wait_css(f'tr[data-session="{sid}"]')
    assert "live-lock" in row.text
    assert api(agent, "PUT", f"/v1/kv/locks/primary?acquire={sid}", "x")[2] == b"true"
    ui.wait_js(f"return document.querySelector('tr[data-session=\"{sid}\"]').textContent.includes('locks/primary')")
    # Invalidate from the UI: the session goes and the lock is released.
    ui.driver.find_element(By.CSS_SELECTOR, f'tr[data-session="{sid}"] button').click()
    ui.driver.switch_to.alert.accept()
    ui.wait_gone(f'tr[data-session="{sid}"]')
    _, _, body = api(agent, "GET", "/v1/kv/locks/primary")
    assert json.loads(body)[0].get("Session", "") == ""
    ui.assert_same_page()


def test_node_view_shows_checks_with_output(ui, agent):
    status, _, body = api(agent, "PUT", "/v1/agent/check/register",
                          {"CheckID": "mem", "Name": "Memory", "TTL": "10m"})
    assert status == 200, body
    api(agent, "PUT", "/v1/agent/check/warn/mem?note=90%25+used")
    ui.open(f"/ui/dc1/nodes/{agent.node}")
    item = ui.wait_css('li.check[data-check="mem"][data-status="warning"]')
    assert "90% used" in item.text
    ui.mark()
    api(agent, "PUT", "/v1/agent/check/pass/mem?note=ok")
    ui.wait_css('li.check[data-check="mem"][data-status="passing"]')
    ui.assert_same_page()
    ui.open("/ui/dc1/nodes/no-such-node")
    assert "not registered" in ui.text(".notice")


def test_members_view_shows_the_gossip_pool_and_rereads_it_on_changes(ui, agent):
    status, _, body = api(agent, "GET", "/v1/agent/members")
    assert status == 200, body
    me = next(m for m in json.loads(body) if m["Name"] == agent.node)
    ui.open("/ui/dc1/members?filter=server")
    row = ui.wait_css(f'tr[data-member="{agent.node}"][data-status="alive"][data-role="server"]')
    assert "Alive" in row.text and "Server" in row.text and me["Addr"] in row.text
    assert me["Tags"]["dc"] in row.text
    assert ui.driver.find_element(By.ID, "member-filter").get_attribute("value") == "server"
    assert ui.driver.find_element(
        By.CSS_SELECTOR, 'nav[aria-label="Main"] a[aria-current="page"]').text == "Members"
    # The filter is part of the address; a filter matching nothing says so.
    ui.open("/ui/dc1/members?filter=client")
    ui.wait_js("return document.body.textContent.includes('No member matches the filter.')")
    ui.open("/ui/dc1/members")
    ui.wait_css(f'tr[data-member="{agent.node}"]')
    ui.wait_js("return document.getElementById('conn').dataset.state === 'live'")
    ui.mark()
    # A catalog change wakes the view's blocking query and the members are read again.
    ui.driver.execute_script(
        "window.__reads = 0; const f = window.fetch; window.fetch = (u, o) => {"
        " if (String(u).startsWith('/v1/agent/members')) window.__reads += 1; return f(u, o); };")
    status, _, body = api(agent, "PUT", "/v1/catalog/register", {"Node": "ext-m", "Address": "10.0.0.9"})
    assert status == 200, body
    ui.wait_js("return window.__reads >= 1")
    ui.wait_css(f'tr[data-member="{agent.node}"][data-status="alive"]')
    ui.assert_same_page()
    # The member's name links to its node.
    ui.driver.find_element(By.CSS_SELECTOR, f'tr[data-member="{agent.node}"] a').click()
    ui.wait_js(f"return location.pathname === '/ui/dc1/nodes/{agent.node}'")
    ui.assert_same_page()
    ui.open("/ui/dc1/members")
    ui.wait_css(f'tr[data-member="{agent.node}"]')
    ui.mark()
    # A client agent joins the pool and then dies: the view shows it alive, then failed,
    # without a reload.
    tmp = Path(tempfile.mkdtemp(prefix="registry-ui-client-"))
    port = shared_conftest.free_port
    log = open(tmp / "client.log", "wb")
    client = subprocess.Popen([
        str(shared_conftest.registry_bin()), "agent", "-data-dir", str(tmp / "data"),
        "-node", "ui-client-1", "-client", "127.0.0.1", "-bind", "127.0.0.1",
        "-http-port", str(port()), "-dns-port", str(port(udp_too=True)),
        "-serf-lan-port", str(port(udp_too=True)), "-serf-wan-port", str(port(udp_too=True)),
        "-server-port", str(port()), "-join", f"127.0.0.1:{me['Port']}",
    ], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        row = ui.wait_css('tr[data-member="ui-client-1"][data-status="alive"][data-role="client"]', 30)
        assert "Client" in row.text and "Alive" in row.text
        ui.screenshot("members-live")
        assert not ui.accessibility_violations()
        client.kill()
        client.wait(timeout=10)
        row = ui.wait_css('tr[data-member="ui-client-1"][data-status="failed"]', 60)
        assert "Failed" in row.text
        ui.assert_same_page()
        ui.screenshot("members-failed")
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


ROOT_SECRET = "ui-root-5f0c1d2e-8a41-4c3b-9d6e-0b7a2f4c1e99"


@pytest.fixture(scope="module")
def acl_agent():
    tmp = Path(tempfile.mkdtemp(prefix="registry-ui-acl-"))
    conf = tmp / "acl.hcl"
    conf.write_text(
        'acl {\n  enabled = true\n  default_policy = "deny"\n'
        f'  tokens {{ initial_management = "{ROOT_SECRET}" }}\n}}\n')
    reg = start_registry(tmp, ("-config-file", str(conf)))
    yield reg
    stop_registry(reg)
    shutil.rmtree(tmp, ignore_errors=True)


def acl_api(agent, method, path, body=None, secret=ROOT_SECRET):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(agent.base_url + path, data=data, method=method,
                                 headers={"X-Consul-Token": secret})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_acl_login_token_and_policy_views_and_logout(browser, acl_agent):
    agent = acl_agent
    status, body = acl_api(agent, "PUT", "/v1/acl/policy", {
        "Name": "kv-read", "Description": "Reads every key",
        "Rules": 'key_prefix "" { policy = "read" }'})
    assert status == 200, body
    policy = json.loads(body)
    status, body = acl_api(agent, "PUT", "/v1/acl/role", {
        "Name": "readers", "Description": "Read-only people", "Policies": [{"Name": "kv-read"}]})
    assert status == 200, body
    status, body = acl_api(agent, "PUT", "/v1/acl/token", {
        "Description": "ui reader", "Policies": [{"Name": "kv-read"}], "Roles": [{"Name": "readers"}]})
    assert status == 200, body
    reader = json.loads(body)
    status, body = acl_api(agent, "GET", "/v1/acl/token/self")
    root_accessor = json.loads(body)["AccessorID"]

    ui = Ui(browser, agent)
    ui.viewport(*LAPTOP, False)
    browser.get_log("browser")
    # No token and a "deny" default: the login form opens and remembers where we were going.
    ui.open("/ui/dc1/services")
    ui.wait_js("return location.pathname === '/ui/dc1/login'")
    assert urllib.parse.parse_qs(urllib.parse.urlparse(ui.driver.current_url).query)["next"] == \
        ["/ui/dc1/services"]
    assert_layout(ui, "input#acl-secret", "Log in")
    assert ui.driver.execute_script("return localStorage.getItem('consul:token')") is None
    ui.screenshot("acl-login-laptop")
    assert not ui.accessibility_violations()
    # A wrong secret is refused with a message; nothing is stored.
    field = ui.driver.find_element(By.ID, "acl-secret")
    field.send_keys("not-a-token")
    ui.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    assert "not accept this token" in ui.text('#login-message [role="alert"]')
    assert ui.driver.execute_script("return localStorage.getItem('consul:token')") is None
    expected = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("/v1/acl/token/self" in m and "403" in m for m in expected), expected
    # The management token: stored as Consul's UI stores it, and back to the services view,
    # which now lists what the anonymous token could not see.
    field.clear()
    field.send_keys(ROOT_SECRET)
    ui.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    ui.wait_js("return location.pathname === '/ui/dc1/services'")
    stored = json.loads(ui.driver.execute_script("return localStorage.getItem('consul:token')"))
    assert stored["SecretID"] == ROOT_SECRET and stored["AccessorID"] == root_accessor
    ui.wait_css('tr[data-service="consul"]')
    ui.wait_css("#logout")
    assert "Initial Management Token" in ui.text("#acl-session")
    ui.mark()
    # Every request carries the token.
    ui.driver.execute_script(
        "window.__tokens = []; const f = window.fetch; window.fetch = (u, o) => {"
        " window.__tokens.push((o && o.headers || {})['X-Consul-Token'] || ''); return f(u, o); };")
    # Tokens, by the navigation.
    ui.driver.find_element(By.CSS_SELECTOR, 'nav[aria-label="Main"] a[data-section="tokens"]').click()
    ui.wait_css(f'tr[data-token="{reader["AccessorID"]}"]')
    assert_layout(ui, f'tr[data-token="{root_accessor}"] .you', "Tokens")
    row = ui.text(f'tr[data-token="{reader["AccessorID"]}"]')
    assert "ui reader" in row and "kv-read" in row and "readers" in row
    assert ROOT_SECRET not in ui.driver.find_element(By.TAG_NAME, "main").text
    ui.screenshot("acl-tokens-laptop")
    assert not ui.accessibility_violations()
    ui.assert_same_page()
    tokens_sent = ui.driver.execute_script("return window.__tokens")
    assert tokens_sent and all(t == ROOT_SECRET for t in tokens_sent), tokens_sent
    # One token by its address: its policy and its role with the role's policies.
    ui.open(f"/ui/dc1/acls/tokens/{reader['AccessorID']}")
    assert_layout(ui, f'tr[data-role] a[href$="/acls/policies/{policy["ID"]}"]', reader["AccessorID"][:8])
    assert "Read-only people" in ui.text("tr[data-role]")
    ui.screenshot("acl-token-laptop")
    assert not ui.accessibility_violations()
    ui.driver.find_element(By.CSS_SELECTOR, f'tr[data-policy="{policy["ID"]}"] a').click()
    ui.wait_js("return document.querySelector('main h1').textContent === 'Policy kv-read'")
    assert 'key_prefix ""' in ui.text("pre.rules")
    assert not ui.accessibility_violations()
    # Policies at phone size, by deep link.
    ui.viewport(*PHONE, True)
    ui.open("/ui/dc1/acls/policies")
    assert_layout(ui, f'tr[data-policy="{policy["ID"]}"]', "Policies")
    assert "global-management" in ui.text("main table")
    ui.screenshot("acl-policies-phone")
    assert not ui.accessibility_violations()
    ui.open("/ui/dc1/acls/tokens")
    assert_layout(ui, f'tr[data-token="{reader["AccessorID"]}"]', "Tokens")
    ui.screenshot("acl-tokens-phone")
    ui.viewport(*LAPTOP, False)
    # Log out: the token is forgotten and, the default being deny, the login form is back.
    ui.driver.find_element(By.ID, "logout").click()
    ui.wait_js("return location.pathname === '/ui/dc1/login'")
    assert ui.driver.execute_script("return localStorage.getItem('consul:token')") is None
    ui.wait_css("#login-link")
    # A token deleted while it is stored: the next denied request logs out.
    ui.driver.execute_script(
        "localStorage.setItem('consul:token', JSON.stringify({AccessorID: 'x', SecretID: 'gone-secret'}))")
    ui.open("/ui/dc1/acls/tokens")
    ui.wait_js("return location.pathname === '/ui/dc1/login'")
    assert ui.driver.execute_script("return localStorage.getItem('consul:token')") is None
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("403" in m for m in errors), errors
