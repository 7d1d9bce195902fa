//! A minimal HTML page builder for the reports: one self-contained file, the
//! plots inline as SVG, no script and nothing fetched from the network.
use std::fmt::Write as _;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Readable on screen and in print, with figures scaled to the page width.
const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}\
table{border-collapse:collapse;font-size:.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}\
th{background:#f3f3f3}td.text,th.text{text-align:left}\
pre{background:#f7f7f7;padding:.75em;overflow-x:auto;white-space:pre-wrap;font-size:.85em}\
.note{color:#555}";

/// Body of a report page, built section by section.
pub struct Page {
    title: String,
    body: String,
}

impl Page {
    pub fn new(title: &str) -> Self {
        let mut body = String::new();
        let _ = writeln!(body, "<h1>{}</h1>", escape(title));
        Page { title: title.to_string(), body }
    }

    pub fn section(&mut self, id: &str, heading: &str) {
        let _ = writeln!(self.body, "<h2 id=\"{}\">{}</h2>", escape(id), escape(heading));
    }

    pub fn paragraph(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
    }

    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p class=\"note\">{}</p>", escape(text));
    }

    /// An inline SVG plot with its caption; the figure's id names the plot.
    pub fn figure(&mut self, id: &str, svg: &str, caption: &str) {
        let _ = writeln!(
            self.body,
            "<figure id=\"fig-{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>",
            escape(id),
            inline_svg(svg),
            escape(caption)
        );
    }

    /// A table; cells are escaped. Columns listed in `text_columns` are left-aligned.
    pub fn table(&mut self, header: &[String], rows: &[Vec<String>], text_columns: &[usize]) {
        let class = |i: usize| if text_columns.contains(&i) { " class=\"text\"" } else { "" };
        self.body.push_str("<table>\n<thead><tr>");
        for (i, h) in header.iter().enumerate() {
            let _ = write!(self.body, "<th{}>{}</th>", class(i), escape(h));
        }
        self.body.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            self.body.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let _ = write!(self.body, "<td{}>{}</td>", class(i), escape(cell));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody>\n</table>\n");
    }

    /// Preformatted text (samples, configs), escaped.
    pub fn preformatted(&mut self, heading: Option<&str>, text: &str) {
        if let Some(h) = heading {
            let _ = writeln!(self.body, "<h3>{}</h3>", escape(h));
        }
        let _ = writeln!(self.body, "<pre>{}</pre>", escape(text));
    }

    /// A bulleted list of plain-text items.
    pub fn list(&mut self, items: &[String]) {
        self.body.push_str("<ul>\n");
        for item in items {
            let _ = writeln!(self.body, "<li>{}</li>", escape(item));
        }
        self.body.push_str("</ul>\n");
    }

    pub fn finish(self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{}</body>\n</html>\n",
            escape(&self.title),
            self.body
        )
    }
}

/// An SVG document without its XML prolog, ready to sit inside HTML.
fn inline_svg(svg: &str) -> &str {
    let trimmed = svg.trim_start();
    match (trimmed.starts_with("<?xml"), trimmed.find("?>")) {
        (true, Some(end)) => trimmed[end + 2..].trim_start(),
        _ => trimmed,
    }
}
