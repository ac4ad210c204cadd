//! Validation rules shared by Consul's request types, with Consul's error texts.
//!
//! Owns metadata, weight, address, node-ID and status checks
//! (`agent/structs/structs.go` validateMetadata / ValidateWeights, `ipaddr.IsAny`,
//! go-uuid's ParseUUID).

use crate::model::status;
use std::collections::BTreeMap;

/// Maximum number of metadata pairs.
pub const META_MAX_KEY_PAIRS: usize = 64;
/// Maximum length of a metadata key.
pub const META_KEY_MAX_LENGTH: usize = 128;
/// Maximum length of a metadata value.
pub const META_VALUE_MAX_LENGTH: usize = 512;
/// Metadata key prefix reserved for Consul itself.
pub const META_KEY_RESERVED_PREFIX: &str = "consul-";

fn valid_meta_key_chars(key: &str) -> bool {
    key.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Validates node or service metadata as Consul does; the error has no prefix
/// (callers add `Invalid Service Meta: ` and the like).
pub fn validate_meta(
    meta: &BTreeMap<String, String>,
    allow_consul_prefix: bool,
) -> Result<(), String> {
    if meta.len() > META_MAX_KEY_PAIRS {
        return Err(format!(
            "Node metadata cannot contain more than {META_MAX_KEY_PAIRS} key/value pairs"
        ));
    }
    for (key, value) in meta {
        let problem = if key.is_empty() {
            Some("Key cannot be blank".to_string())
        } else if !valid_meta_key_chars(key) {
            Some("Key contains invalid characters".to_string())
        } else if key.len() > META_KEY_MAX_LENGTH {
            Some(format!(
                "Key is too long (limit: {META_KEY_MAX_LENGTH} characters)"
            ))
        } else if key.starts_with(META_KEY_RESERVED_PREFIX) && !allow_consul_prefix {
            Some(format!(
                "Key prefix '{META_KEY_RESERVED_PREFIX}' is reserved for internal use"
            ))
        } else if value.len() > META_VALUE_MAX_LENGTH {
            Some(format!(
                "Value is too long (limit: {META_VALUE_MAX_LENGTH} characters)"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(format!(
                "Couldn't load metadata pair ('{key}', '{value}'): {p}"
            ));
        }
    }
    Ok(())
}

/// Validates DNS weights as Consul's ValidateWeights does.
pub fn validate_weights(passing: i64, warning: i64) -> Result<(), String> {
    if passing < 1 {
        return Err("Passing must be greater than 0".to_string());
    }
    if warning < 0 {
        return Err("Warning must be greater or equal than 0".to_string());
    }
    if passing > 65535 || warning > 65535 {
        return Err("DNS Weight must be between 0 and 65535".to_string());
    }
    Ok(())
}

/// Whether `addr` is an "any" address (`0.0.0.0`, `::`, `[::]`), which Consul rejects as a
/// service address.
pub fn is_any_address(addr: &str) -> bool {
    matches!(addr.trim(), "0.0.0.0" | "::" | "[::]")
}

/// Validates a node ID as a UUID, with go-uuid's error texts.
pub fn validate_uuid(id: &str) -> Result<(), String> {
    if id.len() != 36 {
        return Err("uuid string is wrong length".to_string());
    }
    let ok = id.bytes().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    if ok {
        Ok(())
    } else {
        Err("uuid is improperly formatted".to_string())
    }
}

/// Whether `s` is a status a check may be set to (`passing`, `warning`, `critical`).
pub fn is_valid_status(s: &str) -> bool {
    status::is_valid(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn meta_rules() {
        let mut m = BTreeMap::new();
        m.insert("ok_key-1".to_string(), "v".to_string());
        assert!(validate_meta(&m, false).is_ok());
        m.insert("bad key".to_string(), "v".to_string());
        assert_eq!(
            validate_meta(&m, false).unwrap_err(),
            "Couldn't load metadata pair ('bad key', 'v'): Key contains invalid characters"
        );
        let mut m = BTreeMap::new();
        m.insert("consul-x".to_string(), "v".to_string());
        assert!(validate_meta(&m, false)
            .unwrap_err()
            .contains("reserved for internal use"));
        assert!(validate_meta(&m, true).is_ok());
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), "x".repeat(513));
        assert!(validate_meta(&m, false)
            .unwrap_err()
            .contains("Value is too long"));
        let mut m = BTreeMap::new();
        m.insert("k".repeat(129), "v".to_string());
        assert!(validate_meta(&m, false)
            .unwrap_err()
            .contains("Key is too long"));
        let m: BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_meta(&m, false)
            .unwrap_err()
            .contains("more than 64"));
        let mut m = BTreeMap::new();
        m.insert(String::new(), "v".to_string());
        assert!(validate_meta(&m, false)
            .unwrap_err()
            .contains("Key cannot be blank"));
    }

    #[test]
    fn weights_rules() {
        assert!(validate_weights(1, 0).is_ok());
        assert_eq!(
            validate_weights(0, 1).unwrap_err(),
            "Passing must be greater than 0"
        );
        assert_eq!(
            validate_weights(1, -1).unwrap_err(),
            "Warning must be greater or equal than 0"
        );
        assert_eq!(
            validate_weights(70000, 1).unwrap_err(),
            "DNS Weight must be between 0 and 65535"
        );
    }

    #[test]
    fn uuid_and_address() {
        assert!(validate_uuid("40e4a748-2192-161a-0510-9bf59fe950b5").is_ok());
        assert_eq!(
            validate_uuid("nope").unwrap_err(),
            "uuid string is wrong length"
        );
        assert_eq!(
            validate_uuid("40e4a748x2192-161a-0510-9bf59fe950b5").unwrap_err(),
            "uuid is improperly formatted"
        );
        assert!(is_any_address("0.0.0.0"));
        assert!(is_any_address("::"));
        assert!(is_any_address("[::]"));
        assert!(!is_any_address("127.0.0.1"));
        assert!(!is_any_address(""));
    }
}
