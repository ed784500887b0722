//! A generic, readable description of any headlab HDF5 file: its groups,
//! datasets (shape and type) and attributes, for `headlab inspect`.

use std::fmt::Write as _;
use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};

use crate::h5util::{open_kind, Ctx, FileKind, StoreError};

/// One dataset or group in the file tree.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Full path inside the file, e.g. `/params/blocks.0.attn.W_Q`.
    pub path: String,
    /// `None` for groups.
    pub shape: Option<Vec<usize>>,
    /// Element type, as HDF5 describes it (empty for groups).
    pub dtype: String,
    /// Attributes as (name, short printable value).
    pub attrs: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
/// What `headlab inspect` shows of a file.
pub struct Description {
    /// The file's kind.
    pub kind: FileKind,
    /// Every group and dataset, depth first.
    pub entries: Vec<Entry>,
}

impl Description {
    /// Pretty text: the tree with shapes, then root attributes.
    pub fn render(&self, max_attr_len: usize) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let depth = e.path.matches('/').count().saturating_sub(1);
            let indent = "  ".repeat(depth);
            let name = if e.path == "/" { "/" } else { e.path.rsplit('/').next().unwrap_or(&e.path) };
            match &e.shape {
                Some(s) => {
                    let _ = writeln!(out, "{indent}{name:<28} {:<14} {:?}", e.dtype, s);
                }
                None if e.path != "/" => {
                    let _ = writeln!(out, "{indent}{name}/");
                }
                None => {}
            }
            for (k, v) in &e.attrs {
                let mut v = v.replace('\n', " ⏎ ");
                if v.chars().count() > max_attr_len {
                    v = v.chars().take(max_attr_len).collect::<String>() + " …";
                }
                let _ = writeln!(out, "{indent}  @{k} = {v}");
            }
        }
        out
    }
}

/// Read the structure of a headlab file (no bulk data is read).
pub fn describe(path: &Path) -> Result<Description, StoreError> {
    let (file, kind) = open_kind(path, None)?;
    let mut entries = Vec::new();
    walk(&file, "/", path, &mut entries)?;
    Ok(Description { kind, entries })
}

fn walk(group: &hdf5::Group, gpath: &str, path: &Path, out: &mut Vec<Entry>) -> Result<(), StoreError> {
    let ctx = Ctx(path);
    out.push(Entry { path: gpath.to_string(), shape: None, dtype: "group".into(), attrs: attrs_of(group, path) });
    let mut names = ctx.h5(gpath, group.member_names())?;
    names.sort();
    for name in names {
        let child = if gpath == "/" { format!("/{name}") } else { format!("{gpath}/{name}") };
        if let Ok(g) = group.group(&name) {
            walk(&g, &child, path, out)?;
        } else if let Ok(ds) = group.dataset(&name) {
            let dtype =
                ds.dtype().and_then(|t| t.to_descriptor()).map(|d| short_type(&d)).unwrap_or_else(|_| "?".into());
            out.push(Entry { path: child, shape: Some(ds.shape()), dtype, attrs: attrs_of(&ds, path) });
        }
    }
    Ok(())
}

fn short_type(d: &TypeDescriptor) -> String {
    match d {
        TypeDescriptor::Compound(c) => {
            let fields: Vec<String> = c.fields.iter().map(|f| format!("{}:{}", f.name, short_type(&f.ty))).collect();
            format!("{{{}}}", fields.join(","))
        }
        other => other.to_string(),
    }
}

fn attrs_of(loc: &hdf5::Location, _path: &Path) -> Vec<(String, String)> {
    let mut names = loc.attr_names().unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let v = loc.attr(&n).ok().map(|a| attr_value(&a)).unwrap_or_else(|| "?".into());
            (n, v)
        })
        .collect()
}

fn attr_value(a: &hdf5::Attribute) -> String {
    let Ok(desc) = a.dtype().and_then(|t| t.to_descriptor()) else { return "?".into() };
    let scalar = a.ndim() == 0;
    match desc {
        TypeDescriptor::VarLenUnicode => {
            if scalar {
                a.read_scalar::<VarLenUnicode>().map(|s| s.to_string()).unwrap_or_default()
            } else {
                a.read_raw::<VarLenUnicode>()
                    .map(|v| format!("{:?}", v.iter().map(|s| s.as_str()).collect::<Vec<_>>()))
                    .unwrap_or_default()
            }
        }
        TypeDescriptor::VarLenAscii => a.read_scalar::<VarLenAscii>().map(|s| s.to_string()).unwrap_or_default(),
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Boolean => {
            if scalar {
                a.read_scalar::<i64>().map(|v| v.to_string()).unwrap_or_default()
            } else {
                a.read_raw::<i64>().map(|v| format!("{v:?}")).unwrap_or_default()
            }
        }
        TypeDescriptor::Float(_) => {
            if scalar {
                a.read_scalar::<f64>().map(|v| format!("{v}")).unwrap_or_default()
            } else {
                a.read_raw::<f64>().map(|v| format!("{v:?}")).unwrap_or_default()
            }
        }
        other => format!("<{other}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h5util::*;

    #[test]
    fn describes_groups_datasets_and_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.h5");
        atomic_write(&p, FileKind::Metrics, |f| {
            let g = f.create_group("series").map_err(|e| StoreError::Hdf5 {
                path: p.clone(),
                key: "series".into(),
                source: e,
            })?;
            write_array(&g, &p, "loss", &[1.0f32, 0.5], &[2])?;
            set_attr(&g, &p, "count", 2u32)?;
            set_vec_attr(f, &p, "box", &[0.75f64, 0.75])?;
            set_str_attr(f, &p, "config", "a = 1\nb = 2")
        })
        .unwrap();
        let d = describe(&p).unwrap();
        assert_eq!(d.kind, FileKind::Metrics);
        let text = d.render(80);
        assert!(text.contains("series/"), "{text}");
        assert!(text.contains("loss") && text.contains("[2]"), "{text}");
        assert!(text.contains("@count = 2"), "{text}");
        assert!(text.contains("@box = [0.75, 0.75]"), "{text}");
        assert!(text.contains("@kind = metrics"), "{text}");
    }

    #[test]
    fn truncated_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.h5");
        atomic_write(&p, FileKind::Metrics, |f| write_array(f, &p, "x", &vec![0.0f32; 10000], &[10000])).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
        let e = describe(&p).unwrap_err().to_string();
        assert!(e.contains("t.h5"), "{e}");
    }
}
