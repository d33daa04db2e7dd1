//! Settings from the AWS shared files (`~/.aws/credentials` and `~/.aws/config`), read as
//! the AWS command-line tools read them, so that a machine set up for them needs nothing
//! more. Environment variables win over the files, as they do for the AWS tools.

use destiny_core::error::{Error, Result};
use ini::Ini;
use std::path::{Path, PathBuf};

/// Keys of the credentials file and the config file that Destiny uses, with the
/// object-store setting each one gives.
const CREDENTIAL_KEYS: [(&str, &str); 3] = [
    ("aws_access_key_id", "aws_access_key_id"),
    ("aws_secret_access_key", "aws_secret_access_key"),
    ("aws_session_token", "aws_session_token"),
];
const CONFIG_KEYS: [(&str, &str); 2] = [("region", "aws_region"), ("endpoint_url", "aws_endpoint")];

/// The settings that the profile named by `AWS_PROFILE` (or `default`) gives, as pairs of
/// object-store setting and value; `variable` reads the environment.
pub fn settings(variable: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(&'static str, String)>> {
    let profile = variable("AWS_PROFILE")
        .or_else(|| variable("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| "default".to_string());
    let home = variable("HOME").map(PathBuf::from);
    let file = |name: &str, default: &str| {
        variable(name)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|home| home.join(".aws").join(default)))
    };
    let config_section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    let mut settings = Vec::new();
    if let Some(path) = file("AWS_SHARED_CREDENTIALS_FILE", "credentials") {
        settings.extend(section(&path, &profile, &CREDENTIAL_KEYS)?);
    }
    if let Some(path) = file("AWS_CONFIG_FILE", "config") {
        // The config file may hold credentials too; the credentials file wins.
        for (key, value) in section(&path, &config_section, &CREDENTIAL_KEYS)? {
            if !settings.iter().any(|(known, _)| *known == key) {
                settings.push((key, value));
            }
        }
        settings.extend(section(&path, &config_section, &CONFIG_KEYS)?);
    }
    Ok(settings)
}

/// The settings in `[name]` of the INI file at `path`; none if the file is absent.
fn section(
    path: &Path,
    name: &str,
    keys: &[(&str, &'static str)],
) -> Result<Vec<(&'static str, String)>> {
    let ini = match Ini::load_from_file(path) {
        Ok(ini) => ini,
        Err(ini::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(ini::Error::Io(e)) => return Err(Error::io(path, e)),
        Err(ini::Error::Parse(e)) => return Err(Error::io(path, std::io::Error::other(e))),
    };
    let Some(section) = ini.section(Some(name)) else {
        return Ok(Vec::new());
    };
    Ok(keys
        .iter()
        .filter_map(|&(file_key, setting)| {
            section
                .get(file_key)
                .map(|value| (setting, value.trim().to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings_with(variables: &[(&str, String)]) -> Vec<(&'static str, String)> {
        let variables: HashMap<String, String> = variables
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        settings(&|name| variables.get(name).cloned()).unwrap()
    }

    fn home_with(credentials: &str, config: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(home.path().join(".aws/credentials"), credentials).unwrap();
        std::fs::write(home.path().join(".aws/config"), config).unwrap();
        home
    }

    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = secret-default\n\n[work]\naws_access_key_id=AKWORK\naws_secret_access_key=secret-work\naws_session_token=token-work\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n\n[profile work]\nregion = us-east-2\nendpoint_url = http://127.0.0.1:9000\naws_access_key_id = AKIGNORED\n";

    #[test]
    fn the_default_profile_from_both_files() {
        let home = home_with(CREDENTIALS, CONFIG);
        let home = home.path().to_string_lossy().into_owned();
        assert_eq!(
            settings_with(&[("HOME", home)]),
            vec![
                ("aws_access_key_id", "AKDEFAULT".to_string()),
                ("aws_secret_access_key", "secret-default".to_string()),
                ("aws_region", "eu-west-1".to_string()),
            ]
        );
    }

    #[test]
    fn a_named_profile_and_the_credentials_file_wins() {
        let home = home_with(CREDENTIALS, CONFIG);
        let home = home.path().to_string_lossy().into_owned();
        assert_eq!(
            settings_with(&[("HOME", home), ("AWS_PROFILE", "work".to_string())]),
            vec![
                ("aws_access_key_id", "AKWORK".to_string()),
                ("aws_secret_access_key", "secret-work".to_string()),
                ("aws_session_token", "token-work".to_string()),
                ("aws_region", "us-east-2".to_string()),
                ("aws_endpoint", "http://127.0.0.1:9000".to_string()),
            ]
        );
    }

    #[test]
    fn files_named_by_variables_and_missing_files() {
        let folder = tempfile::tempdir().unwrap();
        let credentials = folder.path().join("keys.ini");
        std::fs::write(&credentials, CREDENTIALS).unwrap();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        assert_eq!(
            settings_with(&[
                ("AWS_SHARED_CREDENTIALS_FILE", path(&credentials)),
                ("AWS_CONFIG_FILE", path(&folder.path().join("absent"))),
            ])
            .len(),
            2
        );
        assert!(settings_with(&[("HOME", path(folder.path()))]).is_empty());
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it() {
        let home = home_with("[default\naws_access_key_id = x\n", "");
        let variable =
            |name: &str| (name == "HOME").then(|| home.path().to_string_lossy().into_owned());
        let error = settings(&variable).unwrap_err().to_string();
        assert!(error.contains(".aws/credentials"), "{error}");
    }
}
