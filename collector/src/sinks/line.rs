//! InfluxDB line protocol rendering: one [`Line`] builder that escapes tag values and string
//! fields as the protocol requires, skips what the protocol cannot carry (empty tag values,
//! non-finite floats) and renders the timestamp in seconds (the precision the sink writes with).

use std::fmt::Write as _;

/// One point being built: `measurement,tags fields timestamp`.
#[derive(Debug, Clone)]
pub struct Line {
    buf: String,
    fields: usize,
}

/// Appends `s` escaped for a tag key or value (commas, equal signs and spaces; newlines, which
/// the protocol cannot carry, become spaces).
pub fn escape_tag(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
}

/// A ready tag fragment `,k=v` (empty when `v` is empty: the protocol has no empty tag value).
pub fn tag(k: &str, v: &str) -> String {
    let mut out = String::new();
    if !v.is_empty() {
        out.push(',');
        escape_tag(k, &mut out);
        out.push('=');
        escape_tag(v, &mut out);
    }
    out
}

impl Line {
    pub fn new(measurement: &str) -> Self {
        let mut buf = String::with_capacity(160);
        for c in measurement.chars() {
            if matches!(c, ',' | ' ') {
                buf.push('\\');
            }
            buf.push(c);
        }
        Self { buf, fields: 0 }
    }

    /// Appends pre-rendered tag fragments (see [`tag`]).
    pub fn tags(mut self, fragment: &str) -> Self {
        self.buf.push_str(fragment);
        self
    }

    pub fn tag(mut self, k: &str, v: &str) -> Self {
        self.buf.push_str(&tag(k, v));
        self
    }

    fn sep(&mut self) {
        self.buf.push(if self.fields == 0 { ' ' } else { ',' });
        self.fields += 1;
    }

    pub fn int(mut self, k: &str, v: i64) -> Self {
        self.sep();
        escape_tag(k, &mut self.buf);
        let _ = write!(self.buf, "={v}i");
        self
    }

    /// Float field; left out when not finite (the protocol has no NaN or infinity).
    pub fn float(mut self, k: &str, v: f64) -> Self {
        if v.is_finite() {
            self.sep();
            escape_tag(k, &mut self.buf);
            // Debug keeps a decimal point (1.0, not 1), so the field type stays float.
            let _ = write!(self.buf, "={v:?}");
        }
        self
    }

    pub fn opt_float(self, k: &str, v: Option<f64>) -> Self {
        match v {
            Some(v) => self.float(k, v),
            None => self,
        }
    }

    pub fn string(mut self, k: &str, v: &str) -> Self {
        self.sep();
        escape_tag(k, &mut self.buf);
        self.buf.push_str("=\"");
        for c in v.chars() {
            match c {
                '"' | '\\' => {
                    self.buf.push('\\');
                    self.buf.push(c);
                }
                '\n' | '\r' => self.buf.push(' '),
                _ => self.buf.push(c),
            }
        }
        self.buf.push('"');
        self
    }

    /// Finishes the line with a timestamp in Unix seconds; `None` when no field was set (a
    /// point without fields is invalid).
    pub fn at(mut self, unix_s: i64) -> Option<String> {
        if self.fields == 0 {
            return None;
        }
        let _ = write!(self.buf, " {unix_s}");
        Some(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_types() {
        let l = Line::new("site_traffic")
            .tag("site", "S 1,x=y")
            .tag("empty", "")
            .int("bytes", 42)
            .float("loss_ratio", 1.0)
            .float("nan", f64::NAN)
            .string("cause", "say \"hi\" \\ ok")
            .at(60)
            .unwrap();
        assert_eq!(
            l,
            r#"site_traffic,site=S\ 1\,x\=y bytes=42i,loss_ratio=1.0,cause="say \"hi\" \\ ok" 60"#
        );
        assert_eq!(Line::new("m").tag("a", "b").at(1), None);
        assert_eq!(
            Line::new("m").float("f", 0.1).at(1).unwrap(),
            "m f=0.1 1".to_string()
        );
    }
}
