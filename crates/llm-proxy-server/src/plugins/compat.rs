//! Whether a plugin definition may be registered: the strict metadata contract and the check
//! of the running core's version against the plugin's supported range.

use llm_proxy_api::{BackendPluginDefinition, PluginCompatibility};

/// A parsed version: the first three digit runs, zero padded.
pub type VersionTriple = (u64, u64, u64);

/// Parses a version leniently: every run of ASCII digits anywhere in the text counts, the first
/// three are kept and missing ones are zero (`0.1.0rc1` -> (0,1,0), `v2` -> (2,0,0),
/// `rc1` -> (1,0,0)). No digits, or a run too large for `u64`, is invalid.
pub fn parse_version(text: &str) -> Option<VersionTriple> {
    let runs: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .take(3)
        .map(|run| run.parse().ok())
        .collect::<Option<_>>()?;
    match runs.as_slice() {
        [] => None,
        [major] => Some((*major, 0, 0)),
        [major, minor] => Some((*major, *minor, 0)),
        [major, minor, patch, ..] => Some((*major, *minor, *patch)),
    }
}

/// Checks `core_version` against the plugin's inclusive bounds; `Err` carries the reason.
pub fn check_compatibility(core_version: &str, compat: &PluginCompatibility) -> Result<(), String> {
    let min = &compat.core_min_version;
    let (Some(core), Some(min_parsed)) = (parse_version(core_version), parse_version(min)) else {
        return Err(format!(
            "invalid version format (core={core_version}, min={min})"
        ));
    };
    if core < min_parsed {
        return Err(format!(
            "requires core>={min}, running core is {core_version}"
        ));
    }
    if let Some(max) = &compat.core_max_version {
        let Some(max_parsed) = parse_version(max) else {
            return Err("invalid max version format".to_owned());
        };
        if core > max_parsed {
            return Err(format!(
                "supports core<={max}, running core is {core_version}"
            ));
        }
    }
    Ok(())
}

/// The strict metadata contract; the type system already guarantees the rest (a definition,
/// a callable factory, a callable hook).
pub(super) fn validate_definition(def: &BackendPluginDefinition) -> Result<(), String> {
    if def.backend_name.trim().is_empty() {
        return Err("backend_name is required (strict metadata contract)".to_owned());
    }
    if def.plugin_name.trim().is_empty() {
        return Err("plugin_name is required (strict metadata contract)".to_owned());
    }
    if def.compatibility.core_min_version.trim().is_empty() {
        return Err(
            "compatibility.core_min_version is required (strict metadata contract)".to_owned(),
        );
    }
    if def
        .compatibility
        .core_max_version
        .as_deref()
        .is_some_and(|max| max.trim().is_empty())
    {
        return Err(
            "compatibility.core_max_version must not be blank when given (strict metadata contract)"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing_table() {
        let cases = [
            ("0.1.0", Some((0, 1, 0))),
            ("0.1.0rc1", Some((0, 1, 0))),
            ("1.2", Some((1, 2, 0))),
            ("v2", Some((2, 0, 0))),
            ("1.2.3.4", Some((1, 2, 3))),
            ("rc1", Some((1, 0, 0))),
            ("abc", None),
            ("", None),
            ("99999999999999999999999", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_version(input), expected, "{input:?}");
        }
    }

    #[test]
    fn compatibility_bounds_are_inclusive() {
        let exact = PluginCompatibility::new("0.1.0").up_to("0.1.0");
        assert_eq!(check_compatibility("0.1.0", &exact), Ok(()));
        assert_eq!(
            check_compatibility("0.1.0", &PluginCompatibility::new("0.1")),
            Ok(())
        );
        assert_eq!(
            check_compatibility("0.1.0", &PluginCompatibility::new("0.1.1")),
            Err("requires core>=0.1.1, running core is 0.1.0".to_owned())
        );
        assert_eq!(
            check_compatibility("0.2.0", &PluginCompatibility::new("0.1.0").up_to("0.1.9")),
            Err("supports core<=0.1.9, running core is 0.2.0".to_owned())
        );
        assert_eq!(
            check_compatibility("0.1.0", &PluginCompatibility::new("abc")),
            Err("invalid version format (core=0.1.0, min=abc)".to_owned())
        );
        assert_eq!(
            check_compatibility("dev", &PluginCompatibility::new("0.1.0")),
            Err("invalid version format (core=dev, min=0.1.0)".to_owned())
        );
        assert_eq!(
            check_compatibility("0.1.0", &PluginCompatibility::new("0.1.0").up_to("latest")),
            Err("invalid max version format".to_owned())
        );
    }
}
