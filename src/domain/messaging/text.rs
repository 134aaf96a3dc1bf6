//! The character sets text fields are judged by, and the OpenAPI patterns built from the
//! same sets, so the document says exactly what the checks do.

/// Unicode's White_Space: what `str::trim` removes.
const WHITE_SPACE: &[(char, char)] = &[
    ('\u{0009}', '\u{000D}'),
    (' ', ' '),
    ('\u{0085}', '\u{0085}'),
    ('\u{00A0}', '\u{00A0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200A}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202F}', '\u{202F}'),
    ('\u{205F}', '\u{205F}'),
    ('\u{3000}', '\u{3000}'),
];

/// Format characters that draw no glyph (zero-width spaces and joiners, the byte-order mark,
/// direction marks, embeddings, overrides and isolates, variation selectors, tags: Unicode's
/// Default_Ignorable_Code_Point set) and the fillers that render blank (Hangul fillers, the
/// blank Braille pattern).
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{2800}', '\u{2800}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFF8}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// NUL, which PostgreSQL cannot store in text.
pub const NUL: &[(char, char)] = &[('\0', '\0')];

/// Unicode's control characters (`char::is_control`).
pub const CONTROL: &[(char, char)] = &[('\0', '\u{001F}'), ('\u{007F}', '\u{009F}')];

/// Whether `text` would show as nothing: only white space and invisible characters.
pub fn looks_empty(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || INVISIBLE.iter().any(|&(low, high)| (low..=high).contains(&c)))
}

/// What a text field must be once trimmed of white space.
pub struct Trimmed {
    pub min: usize,
    /// `usize::MAX` for no limit.
    pub max: usize,
    /// Characters refused anywhere in the trimmed text.
    pub banned: &'static [(char, char)],
    /// Whether one of the characters must be visible (`!looks_empty`).
    pub visible: bool,
}

/// Why a text failed its [`Trimmed`] rule.
#[derive(Debug, PartialEq, Eq)]
pub enum Fault {
    Length,
    Banned,
    Invisible,
}

impl Trimmed {
    /// The trimmed text, if it keeps the rule.
    pub fn check<'a>(&self, raw: &'a str) -> Result<&'a str, Fault> {
        let text = raw.trim();
        if !(self.min..=self.max).contains(&text.chars().count()) {
            return Err(Fault::Length);
        }
        if text.chars().any(|c| self.banned.iter().any(|&(low, high)| (low..=high).contains(&c))) {
            return Err(Fault::Banned);
        }
        if self.visible && looks_empty(text) {
            return Err(Fault::Invisible);
        }
        Ok(text)
    }

    /// An ECMA-262 (and Python) pattern matching exactly the raw strings this rule accepts.
    pub fn pattern(&self) -> String {
        let space = class(&[WHITE_SPACE], false);
        let any = class(&[self.banned], true);
        let edge = class(&[self.banned, WHITE_SPACE], true);
        // The trimmed text begins and ends with a character that is not white space.
        let most =
            if self.max == usize::MAX { String::new() } else { self.max.saturating_sub(2).to_string() };
        let inner = |min: usize| format!("{any}{{{min},{most}}}");
        let body = match self.min {
            0 => format!("(?:{edge}(?:{}{edge})?)?", inner(0)),
            1 => format!("{edge}(?:{}{edge})?", inner(0)),
            min => format!("{edge}{}{edge}", inner(min - 2)),
        };
        let seen = if self.visible {
            format!("(?={any}*{})", class(&[self.banned, WHITE_SPACE, INVISIBLE], true))
        } else {
            String::new()
        };
        format!("^{space}*{seen}{body}{space}*$")
    }

    /// [`Self::pattern`], or nothing but white space and invisible characters.
    pub fn pattern_or_blank(&self) -> String {
        let blank = class(&[WHITE_SPACE, INVISIBLE], false);
        format!("^{blank}*$|{}", self.pattern())
    }
}

/// A character class of `sets`, negated if `not`. Astral characters are written as
/// themselves: ECMA-262 and Python spell their escapes differently.
fn class(sets: &[&[(char, char)]], not: bool) -> String {
    if not && sets.iter().all(|set| set.is_empty()) {
        return "[\\s\\S]".to_owned();
    }
    let mut out = String::from(if not { "[^" } else { "[" });
    for &(low, high) in sets.iter().flat_map(|set| set.iter()) {
        push_char(&mut out, low);
        if high != low {
            out.push('-');
            push_char(&mut out, high);
        }
    }
    out.push(']');
    out
}

fn push_char(out: &mut String, c: char) {
    use std::fmt::Write;
    let _ = match u32::from(c) {
        code @ 0..=0xFF if !c.is_ascii_alphanumeric() => write!(out, "\\x{code:02X}"),
        code @ 0x100..=0xFFFF => write!(out, "\\u{code:04X}"),
        _ => write!(out, "{c}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_is_what_trim_removes() {
        let listed: Vec<char> = WHITE_SPACE.iter().flat_map(|&(low, high)| low..=high).collect();
        let trimmed: Vec<char> = (0..=char::MAX as u32)
            .filter_map(char::from_u32)
            .filter(|c| c.to_string().trim().is_empty())
            .collect();
        assert_eq!(listed, trimmed);
    }

    #[test]
    fn control_is_what_is_control_means() {
        let listed: Vec<char> = CONTROL.iter().flat_map(|&(low, high)| low..=high).collect();
        let control: Vec<char> =
            (0..=char::MAX as u32).filter_map(char::from_u32).filter(|c| c.is_control()).collect();
        assert_eq!(listed, control);
    }

    #[test]
    fn blank_text_looks_empty() {
        assert!(looks_empty(" \u{200B}\u{FEFF}\u{E0001}\u{3164}\t"));
        assert!(!looks_empty(" \u{200B}a"));
        assert!(!looks_empty("\u{1C}"));
    }

    #[test]
    fn patterns_are_written_out() {
        let rule = Trimmed { min: 1, max: 3, banned: NUL, visible: false };
        let space = "[\\x09-\\x0D\\x20\\x85\\xA0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]";
        let edge =
            "[^\\x00\\x09-\\x0D\\x20\\x85\\xA0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]";
        assert_eq!(rule.pattern(), format!("^{space}*{edge}(?:[^\\x00]{{0,1}}{edge})?{space}*$"));
        let rule = Trimmed { min: 2, max: 200, banned: &[], visible: false };
        assert_eq!(
            rule.pattern(),
            format!("^{space}*{edge}[\\s\\S]{{0,198}}{edge}{space}*$").replace("\\x00", "")
        );
    }
}
