//! `fleche run --out PATH`: the files a command leaves, recorded with its run and written back on
//! a hit. A path is a file, or a directory recorded as its tree (files, subdirectories and
//! symbolic links; links are recorded, not followed).

use std::collections::HashSet;
use std::io;
use std::path::{Component, Path, PathBuf};

use fleche::Artifact;
use serde::{Deserialize, Serialize};

/// A directory or a symbolic link inside an `--out` directory (the directory itself included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TreeEntry {
    /// The path, as bytes (any path, UTF-8 or not).
    path: Vec<u8>,
    /// A symbolic link's target; `None` for a directory.
    #[serde(default)]
    link: Option<Vec<u8>>,
}

impl TreeEntry {
    fn path(&self) -> PathBuf {
        path_of(&self.path)
    }
}

/// What the `--out` paths held after the run.
#[derive(Default)]
pub(crate) struct Outputs {
    pub(crate) files: Vec<Artifact>,
    /// Directories (parents before children) and links, in walk order.
    pub(crate) tree: Vec<TreeEntry>,
}

/// Reads the `--out` paths: a file as an [`Artifact`], a directory as its tree. At most `budget`
/// bytes of file contents; an error says which path could not be recorded.
pub(crate) fn record(outs: &[PathBuf], mut budget: u64) -> Result<Outputs, String> {
    let mut recorded = Outputs::default();
    let mut take = |path: &Path, len: u64| {
        budget = budget.checked_sub(len).ok_or_else(|| {
            format!(
                "{}: with the output, the output files are larger than 1 GiB",
                path.display()
            )
        })?;
        Ok::<(), String>(())
    };
    for out in outs {
        let meta = std::fs::metadata(out).map_err(|e| format!("{}: {e}", out.display()))?;
        if meta.is_file() {
            take(out, meta.len())?;
            recorded
                .files
                .push(Artifact::read(out).map_err(|e| e.to_string())?);
            continue;
        }
        if !meta.is_dir() {
            return Err(format!(
                "{}: not a regular file or a directory",
                out.display()
            ));
        }
        recorded.tree.push(TreeEntry {
            path: bytes_of(out),
            link: None,
        });
        let walk = walkdir::WalkDir::new(out)
            .follow_links(false)
            .sort_by_file_name()
            .min_depth(1);
        for entry in walk {
            let entry = entry.map_err(|e| e.to_string())?;
            let path = entry.path();
            let kind = entry.file_type();
            if kind.is_dir() {
                recorded.tree.push(TreeEntry {
                    path: bytes_of(path),
                    link: None,
                });
            } else if kind.is_symlink() {
                let target =
                    std::fs::read_link(path).map_err(|e| format!("{}: {e}", path.display()))?;
                recorded.tree.push(TreeEntry {
                    path: bytes_of(path),
                    link: Some(bytes_of(&target)),
                });
            } else if kind.is_file() {
                let len = entry
                    .metadata()
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .len();
                take(path, len)?;
                recorded
                    .files
                    .push(Artifact::read(path).map_err(|e| e.to_string())?);
            } else {
                return Err(format!(
                    "{}: not a regular file, a directory or a symbolic link",
                    path.display()
                ));
            }
        }
    }
    Ok(recorded)
}

/// Whether a stored run's files and tree are what the declared `--out` paths can hold: every
/// path is a declared one, or lies inside a declared directory (plain names only, no `..`)
/// whose every directory between is recorded too; every declared path is recorded. Nothing
/// else is ever written on a hit, whoever wrote the cache.
pub(crate) fn fit(files: &[Artifact], tree: &[TreeEntry], outs: &[PathBuf]) -> bool {
    let roots: HashSet<PathBuf> = tree
        .iter()
        .filter(|e| e.link.is_none())
        .map(TreeEntry::path)
        .filter(|p| outs.contains(p))
        .collect();
    let dirs: HashSet<PathBuf> = tree
        .iter()
        .filter(|e| e.link.is_none())
        .map(TreeEntry::path)
        .collect();
    let inside = |path: &Path| {
        roots.iter().any(|root| {
            path.strip_prefix(root).is_ok_and(|rel| {
                rel.components().count() > 0
                    && rel.components().all(|c| matches!(c, Component::Normal(_)))
            })
        }) && path.parent().is_some_and(|p| dirs.contains(p))
    };
    let files_fit = files.iter().all(|f| {
        let p = f.path();
        (outs.iter().any(|o| o == p) && !roots.contains(p)) || inside(p)
    });
    let tree_fits = tree.iter().all(|e| {
        let p = e.path();
        (e.link.is_none() && roots.contains(&p)) || inside(&p)
    });
    let all_declared = outs
        .iter()
        .all(|o| roots.contains(o) || files.iter().any(|f| f.path() == o));
    files_fit && tree_fits && all_declared
}

/// Writes the outputs back: directories made (a file or link where one should be is an error),
/// files written when missing or different, links made or corrected. Files and directories
/// found inside an output directory that the run did not leave are left alone.
pub(crate) fn restore(files: &[Artifact], tree: &[TreeEntry]) -> Result<(), String> {
    for dir in tree.iter().filter(|e| e.link.is_none()) {
        let path = dir.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            // A declared directory may be a link to one (the user's own); below it, no link
            // may stand where a directory was.
            Ok(m) if m.file_type().is_symlink() && is_root(&path, tree) => {
                if !std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                    return Err(format!("{}: not a directory", path.display()));
                }
            }
            Ok(_) => return Err(format!("{}: not a directory", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let made = if is_root(&path, tree) {
                    std::fs::create_dir_all(&path)
                } else {
                    std::fs::create_dir(&path)
                };
                made.map_err(|e| format!("{}: cannot make the directory: {e}", path.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    for file in files {
        file.restore().map_err(|e| e.to_string())?;
    }
    for entry in tree {
        if let Some(target) = &entry.link {
            relink(&entry.path(), &path_of(target))?;
        }
    }
    Ok(())
}

fn is_root(path: &Path, tree: &[TreeEntry]) -> bool {
    // The walk records each declared directory first, then what is inside it: a root is a
    // directory no other recorded directory holds.
    !tree.iter().filter(|e| e.link.is_none()).any(|e| {
        path.strip_prefix(e.path())
            .is_ok_and(|r| r != Path::new(""))
    })
}

/// Makes `path` a symbolic link to `target`, replacing a file or another link (atomically, by
/// renaming a new link over it); a directory there is an error.
fn relink(path: &Path, target: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::read_link(path).is_ok_and(|t| t == target) {
                return Ok(());
            }
        }
        Ok(m) if m.is_dir() => {
            return Err(format!("{}: a directory where a link was", path.display()));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.fleche-{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    symlink(target, &temp)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            format!("{}: cannot make the link: {e}", path.display())
        })
}

#[cfg(unix)]
fn symlink(target: &Path, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(windows)]
fn symlink(target: &Path, path: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, path)
}

#[cfg(not(any(unix, windows)))]
fn symlink(_target: &Path, _path: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(unix)]
fn bytes_of(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn bytes_of(path: &Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn path_of(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths inside a temporary directory, and artifacts written there.
    struct Place(tempfile::TempDir);

    impl Place {
        fn new() -> Self {
            Self(tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")))
        }
        fn at(&self, rel: &str) -> PathBuf {
            self.0.path().join(rel)
        }
        fn dir(&self, rel: &str) -> TreeEntry {
            TreeEntry {
                path: bytes_of(&self.at(rel)),
                link: None,
            }
        }
        fn link(&self, rel: &str, target: &str) -> TreeEntry {
            TreeEntry {
                path: bytes_of(&self.at(rel)),
                link: Some(target.as_bytes().to_vec()),
            }
        }
        fn file(&self, rel: &str) -> Artifact {
            Artifact::write(self.at(rel), "x").unwrap_or_else(|e| panic!("{e}"))
        }
        fn outs(&self, rels: &[&str]) -> Vec<PathBuf> {
            rels.iter().map(|r| self.at(r)).collect()
        }
    }

    #[test]
    fn honest_records_fit() {
        let t = Place::new();
        let tree = [
            t.dir("out"),
            t.dir("out/sub"),
            t.link("out/l", "/etc/passwd"),
        ];
        let files = [t.file("a.txt"), t.file("out/x"), t.file("out/sub/y")];
        assert!(fit(&files, &tree, &t.outs(&["a.txt", "out"])));
        assert!(fit(&[t.file("a.txt")], &[], &t.outs(&["a.txt"])));
        assert!(fit(&[], &[t.dir("empty")], &t.outs(&["empty"])));
    }

    #[test]
    fn crafted_records_do_not_fit() {
        let t = Place::new();
        let o = t.outs(&["out"]);
        let root = t.dir("out");
        for (files, tree, why) in [
            (
                vec![t.file("elsewhere")],
                vec![root.clone()],
                "a file outside",
            ),
            (
                vec![t.file("out/../x")],
                vec![root.clone()],
                "a `..` inside",
            ),
            (
                vec![t.file("out/sub/y")],
                vec![root.clone()],
                "a parent not recorded",
            ),
            (
                vec![],
                vec![root.clone(), t.dir("other")],
                "a directory outside",
            ),
            (
                vec![],
                vec![root.clone(), t.link("x", "out")],
                "a link outside",
            ),
            (vec![], vec![], "nothing for a declared path"),
            (
                vec![],
                vec![t.link("out", "/")],
                "the declared path as a link",
            ),
        ] {
            assert!(!fit(&files, &tree, &o), "{why}");
        }
        let t = Place::new();
        let declared_dir_as_file = [t.file("out")];
        assert!(!fit(
            &declared_dir_as_file,
            &[t.dir("out")],
            &t.outs(&["out"])
        ));
    }

    #[test]
    fn a_tree_is_recorded_and_restored() {
        let t = Place::new();
        std::fs::create_dir_all(t.at("out/sub/empty")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(t.at("out/a"), b"first").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(t.at("out/sub/b"), b"second").unwrap_or_else(|e| panic!("{e}"));
        symlink(Path::new("sub/b"), &t.at("out/link")).unwrap_or_else(|e| panic!("{e}"));
        let o = t.outs(&["out"]);
        let rec = record(&o, 1 << 30).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rec.files.len(), 2);
        assert_eq!(rec.tree.len(), 4, "{:?}", rec.tree);
        assert!(fit(&rec.files, &rec.tree, &o));
        let bytes = fleche::storage::encoding::to_vec(&rec.tree).unwrap_or_else(|e| panic!("{e}"));
        let back: Vec<TreeEntry> =
            fleche::storage::encoding::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, rec.tree);
        std::fs::remove_dir_all(t.at("out")).unwrap_or_else(|e| panic!("{e}"));
        restore(&rec.files, &rec.tree).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read(t.at("out/a")).ok().as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(
            std::fs::read(t.at("out/link")).ok().as_deref(),
            Some(&b"second"[..])
        );
        assert!(t.at("out/sub/empty").is_dir());
        // A link where a directory was recorded is not written through.
        std::fs::remove_dir_all(t.at("out/sub")).unwrap_or_else(|e| panic!("{e}"));
        let elsewhere = Place::new();
        symlink(elsewhere.0.path(), &t.at("out/sub")).unwrap_or_else(|e| panic!("{e}"));
        assert!(restore(&rec.files, &rec.tree).is_err());
        assert!(
            !elsewhere.at("b").exists(),
            "nothing written through the link"
        );
        // Larger than the budget (`out/a` alone is 5 bytes now): not recorded.
        assert!(record(&o, 5).is_ok());
        let e = record(&o, 4).err().unwrap_or_default();
        assert!(e.contains("larger than"), "{e}");
    }
}
