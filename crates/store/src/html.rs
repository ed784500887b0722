//! The one HTML page builder and escaping function of headlab, used by the
//! report and every lens page: [`escape`] for text, [`Page`] for a
//! self-contained page (title, heading, style, body), written atomically by
//! [`Page::write`].

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// Escape text for HTML element content and double-quoted attribute values
/// (`&`, `<`, `>`, `"`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The style of a page unless [`Page::style`] gives another.
pub const DEFAULT_STYLE: &str =
    "body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}\
figcaption{font-size:90%;color:#555}code{background:#f4f4f4;padding:0 3px}";

/// An HTML page under construction: the text helpers escape what they are
/// given; [`Page::raw`] appends markup as it is (the caller escapes any
/// text inside it with [`escape`]).
#[derive(Debug, Clone)]
pub struct Page {
    title: String,
    heading: Option<String>,
    style: String,
    body: String,
}

impl Page {
    /// An empty page whose `<title>` and `<h1>` are `title`, in [`DEFAULT_STYLE`].
    pub fn new(title: &str) -> Page {
        Page { title: title.to_string(), heading: None, style: DEFAULT_STYLE.to_string(), body: String::new() }
    }

    /// Use `heading` as the `<h1>` instead of the title.
    pub fn heading(mut self, heading: &str) -> Page {
        self.heading = Some(heading.to_string());
        self
    }

    /// Use `css` as the page's style sheet instead of [`DEFAULT_STYLE`].
    pub fn style(mut self, css: &str) -> Page {
        self.style = css.to_string();
        self
    }

    /// Append markup as it is.
    pub fn raw(&mut self, html: &str) {
        self.body.push_str(html);
    }

    /// Append a heading `<hN>` of `text`.
    pub fn h(&mut self, level: u8, text: &str) {
        self.body += &format!("<h{level}>{}</h{level}>\n", escape(text));
    }

    /// Append a paragraph of `text`.
    pub fn p(&mut self, text: &str) {
        self.body += &format!("<p>{}</p>\n", escape(text));
    }

    /// Append a figure: the image `file` (relative to the page) with
    /// `caption` as its alt text and caption.
    pub fn img(&mut self, file: &str, caption: &str) {
        self.body += &format!(
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
            escape(file),
            escape(caption),
            escape(caption)
        );
    }

    /// Append a table with a header row; every cell is text.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.body += "<table><tr>";
        for h in header {
            self.body += &format!("<th>{}</th>", escape(h));
        }
        self.body += "</tr>\n";
        for r in rows {
            self.body += "<tr>";
            for c in r {
                self.body += &format!("<td>{}</td>", escape(c));
            }
            self.body += "</tr>\n";
        }
        self.body += "</table>\n";
    }

    /// The whole document.
    pub fn render(&self) -> String {
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>{s}</style></head>\n<body>\n<h1>{h}</h1>\n{b}</body></html>\n",
            t = escape(&self.title),
            s = self.style,
            h = escape(self.heading.as_deref().unwrap_or(&self.title)),
            b = self.body
        )
    }

    /// Write the document to `path` atomically (`path.tmp`, fsync, rename),
    /// creating the folder if needed.
    pub fn write(&self, path: &Path) -> Result<(), StoreError> {
        write_text_atomic(path, &self.render())
    }
}

/// Write `text` to `path` atomically: to `path.tmp`, fsynced, renamed over
/// `path` (a crash leaves the old file or the new one, never half of one).
pub fn write_text_atomic(path: &Path, text: &str) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape("a < b && c > \"d\""), "a &lt; b &amp;&amp; c &gt; &quot;d&quot;");
        assert_eq!(escape("Σ‖k‖ plain"), "Σ‖k‖ plain");
    }

    #[test]
    fn page_escapes_text_keeps_raw_and_writes() {
        let mut p = Page::new("t <1>").heading("Head & shoulders").style("b{}");
        p.p("x < y");
        p.raw("<p class=\"k\">ok</p>");
        p.table(&["a"], &[vec!["<b>".into()]]);
        p.img("f \"1\".png", "cap");
        let html = p.render();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>t &lt;1&gt;</title>"));
        assert!(html.contains("<h1>Head &amp; shoulders</h1>"));
        assert!(html.contains("<style>b{}</style>"));
        assert!(html.contains("<p>x &lt; y</p>"));
        assert!(html.contains("<p class=\"k\">ok</p>"));
        assert!(html.contains("<td>&lt;b&gt;</td>"));
        assert!(html.contains("src=\"f &quot;1&quot;.png\""));
        assert!(html.ends_with("</body></html>\n"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/index.html");
        p.write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), html);
        assert!(!dir.path().join("sub/index.html.tmp").exists());
    }
}
