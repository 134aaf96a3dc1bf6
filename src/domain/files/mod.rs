//! Attachment uploads: judging the type from the bytes and cleaning the filename.
//!
//! Pure helpers; the upload route buffers the first `SNIFF_BYTES`, asks `sniff`, and
//! enforces the size limit of the returned `FileClass` while it streams the rest.

pub mod attachments;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileClass {
    Image,
    Document,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    pub mime: &'static str,
    pub class: FileClass,
}

/// How many leading bytes `sniff` wants to see before deciding (callers buffer up to this
/// many, or the whole file if shorter). DOCX detection needs to look into the zip's first entries.
pub const SNIFF_BYTES: usize = 8192;

const JPEG: FileType = FileType { mime: "image/jpeg", class: FileClass::Image };
const PNG: FileType = FileType { mime: "image/png", class: FileClass::Image };
const GIF: FileType = FileType { mime: "image/gif", class: FileClass::Image };
const WEBP: FileType = FileType { mime: "image/webp", class: FileClass::Image };
const PDF: FileType = FileType { mime: "application/pdf", class: FileClass::Document };
const DOCX: FileType = FileType {
    mime: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    class: FileClass::Document,
};
const TEXT: FileType = FileType { mime: "text/plain", class: FileClass::Document };
const CSV: FileType = FileType { mime: "text/csv", class: FileClass::Document };

const ZIP_LOCAL_HEADER: &[u8; 4] = b"PK\x03\x04";
const ZIP_LOCAL_HEADER_LEN: usize = 30;
/// General-purpose flag bit 3: sizes are zero here and follow the data in a descriptor.
const ZIP_FLAG_DATA_DESCRIPTOR: u16 = 0x0008;

/// Judges the type from the first bytes of the file (`head`, up to SNIFF_BYTES; `complete`
/// is true when `head` is the whole file). `filename` (already sanitized) only chooses between
/// text/csv and text/plain for text content. None = not an accepted type (caller answers 415).
pub fn sniff(head: &[u8], complete: bool, filename: &str) -> Option<FileType> {
    // Judging exactly SNIFF_BYTES keeps the verdict independent of how much a caller passes.
    let (head, complete) = match head.get(..SNIFF_BYTES) {
        Some(clipped) if head.len() > SNIFF_BYTES => (clipped, false),
        _ => (head, complete),
    };
    if head.is_empty() {
        return None;
    }
    if let Some(kind) = infer::get(head) {
        if let Some(accepted) = confirm_binary(kind.mime_type(), head) {
            return Some(accepted);
        }
        match (kind.mime_type(), kind.matcher_type()) {
            // infer calls a DOCX plain zip unless `word/` is the 1st entry or the 3rd and 4th.
            ("application/zip", _) => return zip_is_docx(head).then_some(DOCX),
            // HTML, XML (so SVG) and scripts are text we refuse to host.
            (_, infer::MatcherType::Text) => return None,
            // Other verdicts can rest on two or three printable bytes ("BM", "MZ", "GIF"):
            // real binaries fail the text test below, prose that happens to match passes it.
            _ => {}
        }
    }
    if !is_plain_text(head, complete) {
        return None;
    }
    Some(if has_csv_extension(filename) { CSV } else { TEXT })
}

/// Accepts infer's verdict only for our types, and only on their full signature: infer's own
/// checks are looser (GIF on "GIF", WebP on bytes 8..12 alone) and would claim plain text.
fn confirm_binary(mime: &str, head: &[u8]) -> Option<FileType> {
    let accepted = match mime {
        "image/jpeg" => JPEG,
        "image/png" if head.starts_with(b"\x89PNG\r\n\x1a\n") => PNG,
        "image/gif" if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") => GIF,
        "image/webp" if head.starts_with(b"RIFF") => WEBP,
        // Readers accept the header anywhere in the first KiB, as infer does.
        "application/pdf" if head.get(..1024).unwrap_or(head).windows(5).any(|w| w == b"%PDF-") => PDF,
        m if m == DOCX.mime => DOCX,
        _ => return None,
    };
    Some(accepted)
}

/// Walks the zip's local file headers within `head`: a DOCX has entries under `word/`, and
/// XLSX/PPTX (which share the OOXML layout) have `xl/` or `ppt/` ones. `[Content_Types].xml`
/// is not required because some writers (LibreOffice) put it last.
fn zip_is_docx(head: &[u8]) -> bool {
    let mut pos: usize = 0;
    let mut word = false;
    while let Some(header) = pos.checked_add(ZIP_LOCAL_HEADER_LEN).and_then(|end| head.get(pos..end)) {
        if !header.starts_with(ZIP_LOCAL_HEADER) {
            break;
        }
        let flags = u16::from_le_bytes([header[6], header[7]]);
        let compressed = u32::from_le_bytes([header[18], header[19], header[20], header[21]]) as usize;
        let name_len = usize::from(u16::from_le_bytes([header[26], header[27]]));
        let extra_len = usize::from(u16::from_le_bytes([header[28], header[29]]));
        let name_start = pos + ZIP_LOCAL_HEADER_LEN;
        let Some(name) = head.get(name_start..name_start + name_len) else {
            break;
        };
        if name.starts_with(b"xl/") || name.starts_with(b"ppt/") {
            return false;
        }
        word |= name.starts_with(b"word/");
        let data_start = name_start + name_len + extra_len;
        pos = if flags & ZIP_FLAG_DATA_DESCRIPTOR != 0 && compressed == 0 {
            // Streamed entry: its size is unknown until the descriptor, so scan for the next header.
            match head
                .get(data_start..)
                .and_then(|rest| rest.windows(ZIP_LOCAL_HEADER.len()).position(|w| w == ZIP_LOCAL_HEADER))
            {
                Some(offset) => data_start + offset,
                None => break,
            }
        } else {
            data_start.saturating_add(compressed)
        };
    }
    word
}

/// UTF-8 without NUL or control characters other than tab, line breaks and form feed, and not
/// opening with a tag (SVG/HTML without the prologs infer knows).
fn is_plain_text(head: &[u8], complete: bool) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A character cut by the end of the buffered head is fine; the rest of the file has it.
        Err(e) if !complete && e.error_len().is_none() => {
            match head.get(..e.valid_up_to()).map(std::str::from_utf8) {
                Some(Ok(text)) => text,
                _ => return false,
            }
        }
        Err(_) => return false,
    };
    !text.is_empty()
        && text.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
        && !opens_with_tag(text)
}

fn opens_with_tag(text: &str) -> bool {
    let mut rest = text.trim_start_matches(|c: char| c == '\u{feff}' || c.is_whitespace()).chars();
    rest.next() == Some('<')
        && rest.next().is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '!' | '?' | '/'))
}

fn has_csv_extension(filename: &str) -> bool {
    let bytes = filename.as_bytes();
    bytes.len() >= 4 && bytes.get(bytes.len() - 4..).is_some_and(|ext| ext.eq_ignore_ascii_case(b".csv"))
}

/// Longest name we hand out; most filesystems cap a name at 255 bytes.
const MAX_FILENAME_BYTES: usize = 255;
/// A longer "extension" is more likely part of the name; only short ones survive truncation.
const MAX_EXTENSION_BYTES: usize = 16;

/// Removes path parts (everything up to the last '/' or '\\'), control characters
/// (including DEL and Unicode bidi controls U+202A–U+202E, U+2066–U+2069, and the marks
/// U+200E, U+200F, U+061C), and surrounding whitespace. A name that ends up empty or made
/// only of dots ("." and ".." included) becomes "file"; a leading dot is otherwise kept.
/// The result is at most 255 bytes, cut on a char boundary, keeping a short extension.
pub fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let cleaned: String = base.chars().filter(|&c| !c.is_control() && !is_bidi_control(c)).collect();
    let name = truncate_name(cleaned.trim());
    if name.is_empty() || name.chars().all(|c| c == '.') {
        return "file".to_owned();
    }
    name
}

/// Bidi controls let "gnp.exe" display as "exe.png"; the marks are invisible as well.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

fn truncate_name(name: &str) -> String {
    if name.len() <= MAX_FILENAME_BYTES {
        return name.to_owned();
    }
    let extension = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_EXTENSION_BYTES => name.get(dot..).unwrap_or(""),
        _ => "",
    };
    let stem = name.get(..name.len() - extension.len()).unwrap_or("");
    let kept = stem.floor_char_boundary(MAX_FILENAME_BYTES - extension.len());
    let kept = stem.get(..kept).unwrap_or("").trim_end();
    format!("{kept}{extension}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn zip_entry(name: &str, flags: u16, data: &[u8]) -> Vec<u8> {
        let mut entry = Vec::new();
        entry.extend_from_slice(ZIP_LOCAL_HEADER);
        entry.extend_from_slice(&20u16.to_le_bytes()); // version needed
        entry.extend_from_slice(&flags.to_le_bytes());
        entry.extend_from_slice(&0u16.to_le_bytes()); // stored
        entry.extend_from_slice(&[0; 8]); // time, date, crc (nothing here checks the crc)
        let size = if flags & ZIP_FLAG_DATA_DESCRIPTOR != 0 { 0 } else { data.len() as u32 };
        entry.extend_from_slice(&size.to_le_bytes());
        entry.extend_from_slice(&size.to_le_bytes());
        entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
        entry.extend_from_slice(&0u16.to_le_bytes()); // extra
        entry.extend_from_slice(name.as_bytes());
        entry.extend_from_slice(data);
        if flags & ZIP_FLAG_DATA_DESCRIPTOR != 0 {
            entry.extend_from_slice(b"PK\x07\x08");
            entry.extend_from_slice(&[0; 4]);
            entry.extend_from_slice(&(data.len() as u32).to_le_bytes());
            entry.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        entry
    }

    fn zip(names: &[&str], flags: u16) -> Vec<u8> {
        names.iter().flat_map(|name| zip_entry(name, flags, b"<?xml version=\"1.0\"?><x/>")).collect()
    }

    fn mime(head: &[u8], filename: &str) -> Option<&'static str> {
        sniff(head, true, filename).map(|t| t.mime)
    }

    #[test]
    fn images_by_signature() {
        let jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00";
        let png =
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00";
        let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!";
        let webp = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10";
        for (head, expected) in [(&jpeg[..], JPEG), (png, PNG), (gif, GIF), (webp, WEBP)] {
            assert_eq!(sniff(head, true, "x.bin"), Some(expected));
            assert_eq!(expected.class, FileClass::Image);
        }
        assert_eq!(sniff(b"GIF87a\x01\x00\x01\x00\x00\x00\x00", true, "a.gif"), Some(GIF));
    }

    #[test]
    fn bytes_decide_over_the_name() {
        let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR";
        assert_eq!(sniff(png, true, "notes.txt"), Some(PNG));
        assert_eq!(mime(b"just words\n", "photo.png"), Some("text/plain"));
    }

    #[test]
    fn pdf() {
        let head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n";
        assert_eq!(sniff(head, false, "r.pdf"), Some(PDF));
        assert_eq!(PDF.class, FileClass::Document);
    }

    #[test]
    fn docx_that_infer_recognizes() {
        // infer wants `word/` as the 3rd and 4th entry after `[Content_Types].xml` (Word's order).
        let docx = zip(
            &["[Content_Types].xml", "_rels/.rels", "word/_rels/document.xml.rels", "word/document.xml"],
            0,
        );
        assert_eq!(infer::get(&docx).unwrap().mime_type(), DOCX.mime);
        assert_eq!(sniff(&docx, false, "a.docx"), Some(DOCX));
        let word_first = zip(&["word/document.xml"], 0);
        assert_eq!(infer::get(&word_first).unwrap().mime_type(), DOCX.mime);
        assert_eq!(sniff(&word_first, false, "a.docx"), Some(DOCX));
    }

    #[test]
    fn docx_that_infer_calls_zip() {
        let docx = zip(&["[Content_Types].xml", "word/document.xml"], 0);
        assert_eq!(infer::get(&docx).unwrap().mime_type(), "application/zip");
        assert_eq!(sniff(&docx, false, "a.docx"), Some(DOCX));
        // LibreOffice's order, with `[Content_Types].xml` last.
        let libre = zip(&["_rels/.rels", "docProps/core.xml", "docProps/app.xml", "word/document.xml"], 0);
        assert_eq!(sniff(&libre, false, "a.docx"), Some(DOCX));
        // Streamed entries carry their sizes in a data descriptor after the data.
        let streamed = zip(&["[Content_Types].xml", "_rels/.rels", "word/document.xml"], 0x0008);
        assert_eq!(sniff(&streamed, false, "a.docx"), Some(DOCX));
        // The head may stop in the middle of an entry.
        assert_eq!(sniff(&docx[..docx.len() - 5], false, "a.docx"), Some(DOCX));
    }

    #[test]
    fn truncated_and_corrupted_zips_do_not_panic() {
        let docx = zip(&["[Content_Types].xml", "_rels/.rels", "word/_rels/a.rels", "word/document.xml"], 0);
        for end in 0..=docx.len() {
            let _ = sniff(&docx[..end], false, "a.docx");
        }
        // Pseudo-random bytes behind a zip header, sizes and name lengths included.
        let mut state: u32 = 0x2545_f491;
        for _ in 0..2000 {
            let mut head = ZIP_LOCAL_HEADER.to_vec();
            for _ in 0..200 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                head.push(state.to_le_bytes()[0]);
            }
            let _ = sniff(&head, false, "a.docx");
        }
        let mut huge = zip_entry("[Content_Types].xml", 0, b"");
        huge[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&zip_entry("word/document.xml", 0, b""));
        assert_eq!(sniff(&huge, false, "a.docx"), None);
    }

    #[test]
    fn other_zips_are_refused() {
        let plain = zip(&["hello.txt", "notes/a.txt"], 0);
        let xlsx = zip(&["[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/styles.xml"], 0);
        let xlsx_short = zip(&["[Content_Types].xml", "xl/workbook.xml", "word/document.xml"], 0);
        let pptx = zip(&["[Content_Types].xml", "ppt/presentation.xml"], 0);
        let jar = zip(&["META-INF/MANIFEST.MF", "com/example/Main.class"], 0);
        for head in [plain, xlsx, xlsx_short, pptx, jar] {
            assert_eq!(sniff(&head, true, "a.docx"), None);
        }
        assert_eq!(sniff(b"PK\x03\x04garbage", true, "a.docx"), None);
        assert_eq!(sniff(b"PK\x05\x06\x00\x00\x00\x00", true, "empty.zip"), None);
    }

    #[test]
    fn refused_binaries() {
        let mut elf = b"\x7fELF\x02\x01\x01\x00".to_vec();
        elf.resize(64, 0);
        let mut pe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
        pe.resize(64, 0);
        let bmp = b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00";
        let gzip = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03";
        let heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic";
        for head in [&elf[..], &pe, bmp, gzip, heic] {
            assert_eq!(sniff(head, true, "a.txt"), None, "{head:?}");
        }
    }

    #[test]
    fn refused_markup_and_scripts() {
        let refused: [&[u8]; 8] = [
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
            b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"\xef\xbb\xbf  <svg/>",
            b"<!DOCTYPE html><html><body>hi</body></html>",
            b"\n  <script>alert(1)</script>",
            b"<html>",
            b"<!-- comment -->",
            b"#!/bin/sh\nrm -rf /\n",
        ];
        for head in refused {
            assert_eq!(sniff(head, true, "a.txt"), None, "{:?}", String::from_utf8_lossy(head));
        }
        assert_eq!(mime(b"<3 see you at 5\n", "a.txt"), Some("text/plain"));
    }

    #[test]
    fn text_and_csv() {
        assert_eq!(sniff(b"hello\tworld\r\n\x0cpage two\n", true, "notes.txt"), Some(TEXT));
        assert_eq!(TEXT.class, FileClass::Document);
        assert_eq!(sniff(b"a,b\n1,2\n", true, "data.csv"), Some(CSV));
        assert_eq!(mime(b"a,b\n1,2\n", "DATA.CSV"), Some("text/csv"));
        assert_eq!(mime(b"a,b\n1,2\n", "data.csv.txt"), Some("text/plain"));
        assert_eq!(mime(b"a,b\n1,2\n", "csv"), Some("text/plain"));
        assert_eq!(mime("\u{feff}name,city\nJürgen,Köln\n".as_bytes(), "x.csv"), Some("text/csv"));
        assert_eq!(mime("שלום עולם\n".as_bytes(), "x.txt"), Some("text/plain"));
        assert_eq!(mime(b"   \n", "x.txt"), Some("text/plain"));
    }

    #[test]
    fn prose_matching_a_short_magic_is_still_text() {
        for head in [&b"BMW,2024,blue\n"[..], b"GIFs are fun\n", b"hello   WEBP is an image format\n"] {
            assert!(infer::get(head).is_some(), "infer no longer claims {head:?}");
        }
        assert_eq!(mime(b"BMW,2024,blue\n", "cars.csv"), Some("text/csv"));
        assert_eq!(mime(b"GIFs are fun\n", "a.txt"), Some("text/plain"));
        assert_eq!(mime(b"hello   WEBP is an image format\n", "a.txt"), Some("text/plain"));
    }

    #[test]
    fn control_characters_make_it_binary() {
        for head in [&b"a\0b"[..], b"a\x1b[31mred", b"a\x7fb", b"a\x08b", "a\u{85}b".as_bytes()] {
            assert_eq!(sniff(head, true, "a.txt"), None, "{head:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(sniff(b"caf\xe9 au lait", true, "a.txt"), None);
        assert_eq!(sniff(b"caf\xe9 au lait", false, "a.txt"), None);
        assert_eq!(sniff(b"\xff\xfeh\x00i\x00", true, "utf16.txt"), None);
    }

    #[test]
    fn utf8_cut_at_the_end_of_the_head() {
        let text = "prix: 5€".as_bytes();
        let cut = &text[..text.len() - 1];
        assert_eq!(sniff(cut, false, "a.txt"), Some(TEXT));
        // A whole file cannot end inside a character.
        assert_eq!(sniff(cut, true, "a.txt"), None);
        // Nor can a character be cut anywhere but at the end.
        let mut middle = cut.to_vec();
        middle.extend_from_slice(b" more");
        assert_eq!(sniff(&middle, false, "a.txt"), None);
    }

    #[test]
    fn longer_head_is_judged_on_its_first_sniff_bytes() {
        // 'é' is two bytes and SNIFF_BYTES is even, so a leading 'a' puts a cut at the boundary.
        let text = format!("a{}", "é".repeat(SNIFF_BYTES));
        assert_eq!(sniff(text.as_bytes(), true, "a.txt"), Some(TEXT));
        let mut late_nul = vec![b'a'; SNIFF_BYTES];
        late_nul.push(0);
        assert_eq!(sniff(&late_nul, true, "a.txt"), Some(TEXT));
    }

    #[test]
    fn empty_is_refused() {
        assert_eq!(sniff(b"", true, "a.txt"), None);
        assert_eq!(sniff(b"", false, "a.txt"), None);
        assert_eq!(sniff(b"\xe2\x82", false, "a.txt"), None);
    }

    #[test]
    fn filename_loses_path_parts() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(sanitize_filename("a/b\\c.txt"), "c.txt");
        assert_eq!(sanitize_filename("report.pdf/"), "file");
    }

    #[test]
    fn filename_loses_control_and_bidi_characters() {
        assert_eq!(sanitize_filename("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(sanitize_filename("\u{202E}gnp.exe"), "gnp.exe");
        assert_eq!(sanitize_filename("x\u{2066}y\u{2069}\u{200f}\u{7f}\u{85}.txt"), "xy.txt");
        assert_eq!(sanitize_filename("  spaced name.txt \t"), "spaced name.txt");
        assert_eq!(sanitize_filename("résumé 2024.docx"), "résumé 2024.docx");
    }

    #[test]
    fn filename_that_becomes_nothing_is_file() {
        for raw in ["", "..", ".", "...", "  ", "\u{0}\u{202e}", "dir/", "a/.."] {
            assert_eq!(sanitize_filename(raw), "file", "{raw:?}");
        }
        assert_eq!(sanitize_filename(".env"), ".env");
        assert_eq!(sanitize_filename("..hidden"), "..hidden");
    }

    #[test]
    fn long_filename_is_cut_on_a_char_boundary() {
        let raw = "é".repeat(150);
        assert_eq!(raw.len(), 300);
        let name = sanitize_filename(&raw);
        assert!(name.len() <= 255);
        assert_eq!(name, "é".repeat(127));
        let raw = format!("{}.txt", "€".repeat(100));
        let name = sanitize_filename(&raw);
        assert!(name.len() <= 255);
        assert!(name.ends_with("€.txt"), "{name}");
        let raw = format!("{}.{}", "a".repeat(200), "b".repeat(100));
        assert_eq!(sanitize_filename(&raw).len(), 255);
    }
}
