//! The one error type of the lens toys' configurations (icl, scaling,
//! scan-snap, max-margin and the physics lens options) and the TOML reader
//! that produces it. Each lens's own error enum wraps it (`Config`), so a
//! message always names the lens, the key or file, the value and the fix.

use std::fmt::Display;

use serde::de::DeserializeOwned;

/// A lens configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value outside its range.
    #[error("{lens} config: `{key}` = {value} is invalid: {hint}")]
    Invalid {
        /// The lens.
        lens: &'static str,
        /// The offending key or option.
        key: String,
        /// Its value.
        value: String,
        /// What is allowed, or what to do.
        hint: String,
    },
    /// The TOML text does not parse (syntax, types, unknown keys).
    #[error("{lens} config {path}: {msg}")]
    Parse {
        /// The lens.
        lens: &'static str,
        /// The file or folder concerned.
        path: String,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// The config cannot be written as TOML (a value TOML cannot hold, such
    /// as a non-finite float in a position TOML rejects). Stored configs are
    /// compared on resume, so an empty stand-in is never written instead.
    #[error("{lens} config cannot be written as TOML: {msg}; report this as a bug with the config you used")]
    Serialize {
        /// The lens.
        lens: &'static str,
        /// What is wrong, and what to do.
        msg: String,
    },
}

impl ConfigError {
    /// `key` of lens `lens` holds `value`; `hint` says what to use instead.
    pub fn invalid(lens: &'static str, key: &str, value: impl Display, hint: &str) -> ConfigError {
        ConfigError::Invalid { lens, key: key.into(), value: value.to_string(), hint: hint.into() }
    }
}

/// The TOML text of config `value` of lens `lens`, as stored in its output
/// files and compared on resume.
pub fn to_toml<T: serde::Serialize>(lens: &'static str, value: &T) -> Result<String, ConfigError> {
    toml::to_string(value).map_err(|e| ConfigError::Serialize { lens, msg: e.to_string() })
}

/// Parse the TOML `text` read from `path` (a path or a label such as
/// `<default>`) into a config of lens `lens`.
pub fn parse_toml<T: DeserializeOwned>(lens: &'static str, text: &str, path: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse { lens, path: path.into(), msg: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        steps: usize,
    }

    #[test]
    fn parse_errors_name_the_lens_and_the_file() {
        let e = parse_toml::<Cfg>("icl", "stepz = 3", "my.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("icl config my.toml:"), "{msg}");
        assert!(msg.contains("stepz"), "{msg}");
        assert!(matches!(e, ConfigError::Parse { lens: "icl", .. }));
    }

    #[test]
    fn a_config_toml_cannot_hold_is_an_error_not_an_empty_string() {
        // A map with non-string keys has no TOML form.
        let mut m = std::collections::BTreeMap::new();
        m.insert(1u32, 2u32);
        let e = to_toml("icl", &m).unwrap_err();
        assert!(matches!(e, ConfigError::Serialize { lens: "icl", .. }), "{e}");
        assert!(e.to_string().starts_with("icl config cannot be written as TOML"), "{e}");
        #[derive(serde::Serialize)]
        struct Ok1 {
            steps: usize,
        }
        assert_eq!(to_toml("icl", &Ok1 { steps: 3 }).unwrap(), "steps = 3\n");
    }

    #[test]
    fn invalid_values_name_key_value_and_hint() {
        let e = ConfigError::invalid("scan-snap", "task.n_classes", 1, "need at least 2 classes");
        assert_eq!(e.to_string(), "scan-snap config: `task.n_classes` = 1 is invalid: need at least 2 classes");
    }
}
