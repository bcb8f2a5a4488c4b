//! Who the proxy serves (single user or a shared deployment), fixed before discovery runs, and
//! the rule that keeps personal-credential backends out of shared deployments.

/// Why multi-user mode refuses a backend; shared by the discovery warning, request errors and
/// the startup check.
pub(crate) const PERSONAL_CREDENTIALS_RULE: &str =
    "it uses personal credentials, which are only allowed in single-user mode";

/// Who the proxy serves; fixed before discovery runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// One user; personal-credential backends allowed.
    SingleUser,
    /// Shared deployment; personal-credential backends refused.
    MultiUser,
}

/// Environment variable fixing the access mode (`multi_user` or `single_user`).
pub const ACCESS_MODE_ENV: &str = "LLM_PROXY_ACCESS_MODE";

impl AccessMode {
    /// Wire label (`single_user`, `multi_user`), as in [`ACCESS_MODE_ENV`].
    pub fn label(self) -> &'static str {
        match self {
            Self::SingleUser => "single_user",
            Self::MultiUser => "multi_user",
        }
    }

    /// The mode from the `--multi-user-mode` / `--single-user-mode` flags, else the value of
    /// [`ACCESS_MODE_ENV`], else single-user. Both flags together, or an unknown value, is an
    /// error.
    pub fn resolve(
        multi_user_flag: bool,
        single_user_flag: bool,
        env_value: Option<&str>,
    ) -> Result<Self, String> {
        match (multi_user_flag, single_user_flag) {
            (true, true) => {
                return Err(
                    "--multi-user-mode and --single-user-mode cannot be used together".to_owned(),
                );
            }
            (true, false) => return Ok(Self::MultiUser),
            (false, true) => return Ok(Self::SingleUser),
            (false, false) => {}
        }
        match env_value.map(|v| v.trim().to_lowercase().replace('-', "_")) {
            None => Ok(Self::SingleUser),
            Some(v) if v.is_empty() || v == "single_user" => Ok(Self::SingleUser),
            Some(v) if v == "multi_user" => Ok(Self::MultiUser),
            Some(v) => Err(format!(
                "{ACCESS_MODE_ENV}: expected multi_user or single_user, got '{v}'"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_mode_from_flags_and_environment() {
        let resolve = AccessMode::resolve;
        assert_eq!(resolve(false, false, None), Ok(AccessMode::SingleUser));
        assert_eq!(resolve(true, false, None), Ok(AccessMode::MultiUser));
        assert_eq!(
            resolve(false, true, Some("multi_user")),
            Ok(AccessMode::SingleUser)
        );
        assert_eq!(
            resolve(false, false, Some("multi_user")),
            Ok(AccessMode::MultiUser)
        );
        assert_eq!(
            resolve(false, false, Some(" Multi-User ")),
            Ok(AccessMode::MultiUser)
        );
        assert_eq!(
            resolve(false, false, Some("single_user")),
            Ok(AccessMode::SingleUser)
        );
        assert!(resolve(true, true, None).is_err_and(|e| e.contains("cannot be used together")));
        assert!(resolve(false, false, Some("shared")).is_err_and(|e| e.contains(ACCESS_MODE_ENV)));
        assert_eq!(AccessMode::MultiUser.label(), "multi_user");
    }
}
