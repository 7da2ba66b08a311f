//! Where configuration files come from: a plain directory, or a git repository read at a
//! label (a branch, a tag or a commit) through gix, never through a `git` process.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::ConfigError;

/// The configuration files at one label: their names (top-level files only) and contents.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// The label they were read at: the branch, tag or commit asked for, or the checked-out
    /// branch; `None` for a plain directory.
    pub label: Option<String>,
    /// The commit they were read from; `None` for a plain directory.
    pub version: Option<String>,
    /// File name → contents.
    pub contents: BTreeMap<String, Vec<u8>>,
}

/// A directory of configuration files, or a git repository of them.
#[derive(Debug)]
pub(super) enum Source {
    Directory(PathBuf),
    /// A git repository, opened again for each read (cheap next to reading its objects), so
    /// the server follows new commits and holds no repository state between requests.
    Git(PathBuf),
}

/// The files a configuration source holds: YAML and `.properties`.
fn is_config_file(name: &str) -> bool {
    [".yml", ".yaml", ".properties"]
        .iter()
        .any(|extension| name.ends_with(extension))
}

impl Source {
    /// A git repository when `dir` is one (its work tree or a bare repository), else the plain
    /// directory.
    pub(super) fn open(dir: &Path) -> Result<Self, ConfigError> {
        if !dir.is_dir() {
            return Err(ConfigError::Setup(format!(
                "config directory {} does not exist",
                dir.display()
            )));
        }
        let is_git = dir.join(".git").exists() || dir.join("HEAD").is_file();
        if !is_git {
            return Ok(Self::Directory(dir.to_path_buf()));
        }
        open_git(dir)?;
        Ok(Self::Git(dir.to_path_buf()))
    }

    /// A description for property source names: `file:{dir}` or `git:{dir}`.
    pub(super) fn name(&self) -> String {
        match self {
            Self::Directory(dir) => format!("file:{}", dir.display()),
            Self::Git(dir) => format!("git:{}", dir.display()),
        }
    }

    /// The files at `label` (the default label when `None`).
    pub(super) fn files(&self, label: Option<&str>) -> Result<Files, ConfigError> {
        match self {
            Self::Directory(dir) => {
                if let Some(label) = label {
                    return Err(ConfigError::NoSuchLabel(format!(
                        "{label} (labels need the config directory to be a git repository)"
                    )));
                }
                read_directory(dir)
            }
            Self::Git(dir) => read_git(&open_git(dir)?, label),
        }
    }
}

fn open_git(dir: &Path) -> Result<gix::Repository, ConfigError> {
    gix::open(dir).map_err(|error| {
        ConfigError::Setup(format!("opening git repository {}: {error}", dir.display()))
    })
}

fn read_directory(dir: &Path) -> Result<Files, ConfigError> {
    let mut contents = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|error| ConfigError::Read(format!("reading {}: {error}", dir.display())))?;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_config_file(&name) && entry.path().is_file() {
            let bytes = std::fs::read(entry.path())
                .map_err(|error| ConfigError::Read(format!("reading {name}: {error}")))?;
            contents.insert(name, bytes);
        }
    }
    Ok(Files {
        label: None,
        version: None,
        contents,
    })
}

/// Whether `label` may name a revision: a branch, tag or commit name, nothing of revision
/// syntax that would reach elsewhere (`..`, `:`, `@{`, `^`, `~`).
fn is_plain_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 200
        && !label.starts_with(['-', '/'])
        && !label.contains("..")
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

fn read_git(repository: &gix::Repository, label: Option<&str>) -> Result<Files, ConfigError> {
    let label = match label {
        Some(label) if is_plain_label(label) => label.to_owned(),
        Some(label) => return Err(ConfigError::NoSuchLabel(label.to_owned())),
        None => repository
            .head_name()
            .map_err(|error| ConfigError::Read(format!("reading HEAD: {error}")))?
            .map(|name| name.shorten().to_string())
            .unwrap_or_else(|| "HEAD".to_owned()),
    };
    let spec = format!("{label}^{{commit}}");
    let commit = repository
        .rev_parse_single(spec.as_str())
        .map_err(|_| ConfigError::NoSuchLabel(label.clone()))?;
    let version = commit.to_string();
    let tree = repository
        .find_commit(commit)
        .and_then(|commit| commit.tree())
        .map_err(|error| ConfigError::Read(format!("reading {label}: {error}")))?;
    let mut contents = BTreeMap::new();
    for entry in tree.iter() {
        let entry =
            entry.map_err(|error| ConfigError::Read(format!("reading {label}: {error}")))?;
        let name = entry.filename().to_string();
        if !entry.mode().is_blob() || !is_config_file(&name) {
            continue;
        }
        let blob = repository
            .find_object(entry.oid())
            .map_err(|error| ConfigError::Read(format!("reading {name}: {error}")))?;
        contents.insert(name, blob.detach().data);
    }
    Ok(Files {
        label: Some(label),
        version: Some(version),
        contents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_revisions_and_nothing_else() {
        for plain in ["main", "v1.0", "release/2026-12", "3f2a9c1"] {
            assert!(is_plain_label(plain), "{plain}");
        }
        for refused in [
            "",
            "main..v1",
            "HEAD:application.yml",
            "@{-1}",
            "main^",
            "-x",
            "a b",
        ] {
            assert!(!is_plain_label(refused), "{refused}");
        }
    }
}
