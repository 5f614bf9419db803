//! The TOML files people edit — the probe's and the collector's configs, the cost model —
//! read the same way everywhere, with errors that name the file, then the line or the key, so
//! that whoever edits the file sees the fix.

use std::path::{Path, PathBuf};

/// A file that cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML parser's message already shows line, column and the offending text (and, for
    /// `deny_unknown_fields`, the key it did not expect).
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    /// A value that parses but cannot work; `key` is its path, e.g. `shared[2].annual_eur`.
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

impl ConfigFileError {
    pub fn invalid(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Reads and parses `path`.
///
/// # Errors
/// [`ConfigFileError::Io`] or [`ConfigFileError::Parse`], naming the file.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigFileError::Parse {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("rie-config-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.toml");
        std::fs::write(&p, "port = 1\nprot = 2\n").unwrap();
        let e = read_toml::<Cfg>(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&p.display().to_string()) && e.contains("line 2") && e.contains("prot"),
            "{e}"
        );
        let e = read_toml::<Cfg>(&dir.join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.toml: cannot read"), "{e}");
        let e = ConfigFileError::invalid("x.toml", "a.b", "must be 1").to_string();
        assert_eq!(e, "x.toml: key `a.b`: must be 1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
