//! `POST /v1/acl/login` for auth methods of type `jwt`: the method's configuration (static
//! public keys only: nothing is ever fetched from the network), verification of a bearer JWT
//! (signature, issuer, audiences, expiry and not-before with Consul's leeways), the mapping of
//! its claims to `value.*` and `list.*` attributes, and the binding rules whose `Selector`
//! matches them, with `${value.x}` interpolated into their `BindName`.
//!
//! Signatures are checked by the `jsonwebtoken` crate; everything about claims is checked
//! here, so the leeways behave as Consul documents them.

use registry_proto::acl::{BindingRule, NodeIdentity, ServiceIdentity, TemplatedPolicy};
use registry_proto::duration::parse_go_duration;
use registry_proto::filter::Filter;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Consul's defaults when a leeway is 0 (a negative leeway, `-1`, disables it).
const DEFAULT_EXP_LEEWAY: i64 = 150;
const DEFAULT_NBF_LEEWAY: i64 = 150;
const DEFAULT_CLOCK_SKEW: i64 = 60;

/// The `Config` of a `jwt` auth method.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// `JWTValidationPubKeys`, as PEM.
    pub keys: Vec<String>,
    /// `JWTSupportedAlgs` (default `RS256`).
    pub algs: Vec<jsonwebtoken::Algorithm>,
    /// `BoundIssuer`.
    pub bound_issuer: String,
    /// `BoundAudiences`.
    pub bound_audiences: Vec<String>,
    /// `ClaimMappings`: claim (a name or a `/`-separated pointer) to attribute name.
    pub claim_mappings: BTreeMap<String, String>,
    /// `ListClaimMappings`.
    pub list_claim_mappings: BTreeMap<String, String>,
    /// Leeways in seconds (negative: disabled).
    pub exp_leeway: i64,
    /// `NotBeforeLeeway`.
    pub nbf_leeway: i64,
    /// `ClockSkewLeeway`.
    pub clock_skew: i64,
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn string_list(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what} must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("{what} must be a list of strings")),
    }
}

fn string_map(v: Option<&Value>, what: &str) -> Result<BTreeMap<String, String>, String> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, x)| {
                x.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| format!("{what} must map strings to strings"))
            })
            .collect(),
        Some(_) => Err(format!("{what} must map strings to strings")),
    }
}

/// A leeway: a Go duration string or a number of seconds; 0 means Consul's default.
fn leeway(v: Option<&Value>, what: &str, default: i64) -> Result<i64, String> {
    let secs = match v {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Some(Value::String(s)) if s.starts_with('-') => -1,
        Some(Value::String(s)) => parse_go_duration(s)
            .map_err(|e| format!("{what}: {e}"))?
            .as_secs() as i64,
        Some(_) => return Err(format!("{what} must be a duration")),
    };
    Ok(match secs {
        0 => default,
        s if s < 0 => -1,
        s => s,
    })
}

fn decoding_key(pem: &str, alg: jsonwebtoken::Algorithm) -> Option<jsonwebtoken::DecodingKey> {
    use jsonwebtoken::{Algorithm as A, DecodingKey};
    let b = pem.as_bytes();
    match alg {
        A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 => {
            DecodingKey::from_rsa_pem(b).ok()
        }
        A::ES256 | A::ES384 => DecodingKey::from_ec_pem(b).ok(),
        A::EdDSA => DecodingKey::from_ed_pem(b).ok(),
        A::HS256 | A::HS384 | A::HS512 => None,
    }
}

impl JwtConfig {
    /// Reads and checks a `jwt` method's `Config`; the text is the 400's message.
    pub fn parse(config: &Value) -> Result<JwtConfig, String> {
        for remote in ["OIDCDiscoveryURL", "JWKSURL"] {
            if get(config, remote)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(format!(
                    "Invalid Auth Method: {remote} is not supported: this registry never \
                     fetches keys over the network; give the keys in JWTValidationPubKeys"
                ));
            }
        }
        let keys = string_list(get(config, "JWTValidationPubKeys"), "JWTValidationPubKeys")?;
        if keys.is_empty() {
            return Err(
                "Invalid Auth Method: one of JWTValidationPubKeys, JWKSURL, or OIDCDiscoveryURL must be set"
                    .to_string(),
            );
        }
        let alg_names = string_list(get(config, "JWTSupportedAlgs"), "JWTSupportedAlgs")?;
        let mut algs = Vec::new();
        for name in &alg_names {
            let alg: jsonwebtoken::Algorithm = name
                .parse()
                .map_err(|_| format!("Invalid Auth Method: unsupported algorithm {name:?}"))?;
            if matches!(
                alg,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            ) {
                return Err(format!(
                    "Invalid Auth Method: unsupported algorithm {name:?}"
                ));
            }
            algs.push(alg);
        }
        if algs.is_empty() {
            algs.push(jsonwebtoken::Algorithm::RS256);
        }
        for (i, pem) in keys.iter().enumerate() {
            if !algs.iter().any(|a| decoding_key(pem, *a).is_some()) {
                return Err(format!(
                    "Invalid Auth Method: error parsing public key JWTValidationPubKeys[{i}]: \
                     not a PEM public key for {alg_names:?}"
                ));
            }
        }
        let claim_mappings = string_map(get(config, "ClaimMappings"), "ClaimMappings")?;
        let list_claim_mappings =
            string_map(get(config, "ListClaimMappings"), "ListClaimMappings")?;
        for name in claim_mappings.values().chain(list_claim_mappings.values()) {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "Invalid Auth Method: claim mapping to {name:?}: attribute names are letters, digits and '_'"
                ));
            }
        }
        Ok(JwtConfig {
            keys,
            algs,
            bound_issuer: get(config, "BoundIssuer")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            bound_audiences: string_list(get(config, "BoundAudiences"), "BoundAudiences")?,
            claim_mappings,
            list_claim_mappings,
            exp_leeway: leeway(
                get(config, "ExpirationLeeway"),
                "ExpirationLeeway",
                DEFAULT_EXP_LEEWAY,
            )?,
            nbf_leeway: leeway(
                get(config, "NotBeforeLeeway"),
                "NotBeforeLeeway",
                DEFAULT_NBF_LEEWAY,
            )?,
            clock_skew: leeway(
                get(config, "ClockSkewLeeway"),
                "ClockSkewLeeway",
                DEFAULT_CLOCK_SKEW,
            )?,
        })
    }

    /// Verifies `jwt` at `now` (Unix seconds) and returns its claims.
    pub fn verify(&self, jwt: &str, now: i64) -> Result<Map<String, Value>, String> {
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|e| format!("failed to parse the token: {e}"))?;
        if !self.algs.contains(&header.alg) {
            return Err(format!(
                "token is signed with {:?}, which is not allowed",
                header.alg
            ));
        }
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut claims = None;
        for pem in &self.keys {
            let Some(key) = decoding_key(pem, header.alg) else {
                continue;
            };
            if let Ok(data) = jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation) {
                claims = Some(data.claims);
                break;
            }
        }
        let claims = claims.ok_or("no known key successfully validated the token signature")?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<(), String> {
        let skew = self.clock_skew.max(0);
        let num = |k: &str| claims.get(k).and_then(Value::as_f64).map(|f| f as i64);
        if let Some(exp) = num("exp") {
            if self.exp_leeway >= 0 && now > exp + self.exp_leeway + skew {
                return Err("token is expired".to_string());
            }
        }
        if let Some(nbf) = num("nbf") {
            if self.nbf_leeway >= 0 && now < nbf - self.nbf_leeway - skew {
                return Err("token not valid yet".to_string());
            }
        }
        if let Some(iat) = num("iat") {
            if self.clock_skew >= 0 && now < iat - skew {
                return Err("token issued in the future".to_string());
            }
        }
        if !self.bound_issuer.is_empty()
            && claims.get("iss").and_then(Value::as_str) != Some(self.bound_issuer.as_str())
        {
            return Err("invalid issuer (iss) claim".to_string());
        }
        if !self.bound_audiences.is_empty() {
            let auds: Vec<&str> = match claims.get("aud") {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !auds
                .iter()
                .any(|a| self.bound_audiences.iter().any(|b| b == a))
            {
                return Err("invalid audience (aud) claim".to_string());
            }
        }
        Ok(())
    }

    /// The attributes binding rules see: `{"value": {...}, "list": {...}}`.
    pub fn map_claims(&self, claims: &Map<String, Value>) -> Value {
        let claims = Value::Object(claims.clone());
        let lookup = |sel: &str| -> Option<Value> {
            if sel.starts_with('/') {
                claims.pointer(sel).cloned()
            } else {
                claims.get(sel).cloned()
            }
        };
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let mut value = Map::new();
        for (claim, attr) in &self.claim_mappings {
            if let Some(s) = lookup(claim).as_ref().and_then(scalar) {
                value.insert(attr.clone(), Value::String(s));
            }
        }
        let mut list = Map::new();
        for (claim, attr) in &self.list_claim_mappings {
            let items: Vec<Value> = match lookup(claim) {
                Some(Value::Array(a)) => a.iter().filter_map(scalar).map(Value::String).collect(),
                Some(v) => scalar(&v).map(Value::String).into_iter().collect(),
                None => Vec::new(),
            };
            list.insert(attr.clone(), Value::Array(items));
        }
        serde_json::json!({"value": value, "list": list})
    }
}

/// Replaces `${value.x}` (and `${list.x}` is refused) in `text` from `attrs`.
pub fn interpolate(text: &str, attrs: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated variable in {text:?}"));
        };
        let var = after[..end].trim();
        let value = var
            .strip_prefix("value.")
            .and_then(|k| attrs.get("value")?.get(k)?.as_str())
            .ok_or_else(|| format!("cannot interpolate {var:?}: no such value"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What a login grants, from the binding rules that matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    /// `service` bindings.
    pub service_identities: Vec<ServiceIdentity>,
    /// `node` bindings (in this datacenter).
    pub node_identities: Vec<NodeIdentity>,
    /// `role` bindings, by name.
    pub roles: Vec<String>,
    /// `policy` bindings, by name.
    pub policies: Vec<String>,
    /// `templated-policy` bindings.
    pub templated_policies: Vec<TemplatedPolicy>,
}

impl Bindings {
    /// Whether nothing was bound.
    pub fn is_empty(&self) -> bool {
        self.service_identities.is_empty()
            && self.node_identities.is_empty()
            && self.roles.is_empty()
            && self.policies.is_empty()
            && self.templated_policies.is_empty()
    }
}

fn valid_service_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks a binding rule's fields; the text is the 400's message.
pub fn check_rule(rule: &BindingRule) -> Result<(), String> {
    if !rule.selector.is_empty() {
        Filter::parse(&rule.selector)
            .map_err(|e| format!("invalid Binding Rule: Selector is invalid: {e}"))?;
    }
    match rule.bind_type.as_str() {
        "service" | "node" | "role" | "policy" | "templated-policy" => {}
        "" => return Err("Invalid Binding Rule: no BindType is set".to_string()),
        other => return Err(format!("Invalid Binding Rule: unknown BindType {other:?}")),
    }
    if rule.bind_name.is_empty() {
        return Err("Invalid Binding Rule: no BindName is set".to_string());
    }
    if rule.bind_type == "templated-policy" {
        if super::templated::find(&rule.bind_name).is_none() {
            return Err(format!(
                "Invalid Binding Rule: templated policy {:?} does not exist",
                rule.bind_name
            ));
        }
    } else if !balanced(&rule.bind_name) {
        return Err("Invalid Binding Rule: invalid BindName".to_string());
    }
    Ok(())
}

fn balanced(s: &str) -> bool {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        match rest[i..].find('}') {
            Some(e) => rest = &rest[i + e + 1..],
            None => return false,
        }
    }
    true
}

/// Applies `rules` (one auth method's) to the attributes of a login.
pub fn bind(rules: &[&BindingRule], attrs: &Value, datacenter: &str) -> Result<Bindings, String> {
    let mut out = Bindings::default();
    for rule in rules {
        let matches = if rule.selector.is_empty() {
            true
        } else {
            Filter::parse(&rule.selector)
                .map_err(|e| e.to_string())?
                .matches(attrs)
        };
        if !matches {
            continue;
        }
        let name = if rule.bind_type == "templated-policy" {
            rule.bind_name.clone()
        } else {
            interpolate(&rule.bind_name, attrs)?
        };
        match rule.bind_type.as_str() {
            "service" => {
                if !valid_service_name(&name) {
                    return Err(format!(
                        "computed bind name {name:?} is not a valid service name"
                    ));
                }
                out.service_identities.push(ServiceIdentity {
                    service_name: name,
                    datacenters: Vec::new(),
                });
            }
            "node" => {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    return Err(format!(
                        "computed bind name {name:?} is not a valid node name"
                    ));
                }
                out.node_identities.push(NodeIdentity {
                    node_name: name,
                    datacenter: datacenter.to_string(),
                });
            }
            "role" => out.roles.push(name),
            "policy" => out.policies.push(name),
            _ => {
                let tp = TemplatedPolicy {
                    template_name: name,
                    name: interpolate(&rule.bind_vars_name, attrs)?,
                    datacenters: Vec::new(),
                };
                super::templated::validate(&tp)?;
                out.templated_policies.push(tp);
            }
        }
    }
    Ok(out)
}

/// `MaxTokenTTL` as a duration (empty: none).
pub fn max_ttl(text: &str) -> Result<Option<Duration>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let d = parse_go_duration(text).map_err(|e| format!("Invalid MaxTokenTTL: {e}"))?;
    Ok((!d.is_zero()).then_some(d))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(selector: &str, bind_type: &str, bind_name: &str) -> BindingRule {
        BindingRule {
            selector: selector.into(),
            bind_type: bind_type.into(),
            bind_name: bind_name.into(),
            ..BindingRule::default()
        }
    }

    #[test]
    fn claims_map_to_values_and_lists_that_selectors_see() {
        let cfg = JwtConfig {
            claim_mappings: [("sub".to_string(), "name".to_string())].into(),
            list_claim_mappings: [("/groups".to_string(), "groups".to_string())].into(),
            ..JwtConfig::default()
        };
        let claims = json!({"sub": "web", "groups": ["dev", "ops"]});
        let attrs = cfg.map_claims(claims.as_object().unwrap());
        assert_eq!(attrs["value"]["name"], "web");
        let r1 = rule(
            "value.name == \"web\" and \"ops\" in list.groups",
            "service",
            "svc-${value.name}",
        );
        let r2 = rule("\"admins\" in list.groups", "role", "admin");
        let r3 = rule("", "templated-policy", "builtin/node");
        let r3 = BindingRule {
            bind_vars_name: "${value.name}".into(),
            ..r3
        };
        let b = bind(&[&r1, &r2, &r3], &attrs, "dc1").unwrap();
        assert_eq!(b.service_identities[0].service_name, "svc-web");
        assert!(b.roles.is_empty());
        assert_eq!(b.templated_policies[0].name, "web");
        assert!(interpolate("${value.nope}", &attrs).is_err());
        assert!(check_rule(&rule("value.x ==", "service", "a")).is_err());
        assert!(check_rule(&rule("", "bogus", "a")).is_err());
    }

    #[test]
    fn leeways_follow_consul_defaults() {
        let cfg = JwtConfig::parse(&json!({"JWTValidationPubKeys": []}));
        assert!(cfg.is_err());
        let cfg = JwtConfig::parse(&json!({"JWKSURL": "https://x"}));
        assert!(cfg.unwrap_err().contains("JWKSURL"));
        let c = JwtConfig {
            exp_leeway: DEFAULT_EXP_LEEWAY,
            nbf_leeway: DEFAULT_NBF_LEEWAY,
            clock_skew: DEFAULT_CLOCK_SKEW,
            ..JwtConfig::default()
        };
        let claims = |exp: i64| json!({"exp": exp}).as_object().unwrap().clone();
        assert!(c.check_claims(&claims(1000), 1000 + 210).is_ok());
        assert!(c.check_claims(&claims(1000), 1000 + 211).is_err());
        let strict = JwtConfig {
            exp_leeway: 1,
            clock_skew: -1,
            ..c
        };
        assert!(strict.check_claims(&claims(1000), 1002).is_err());
    }
}
