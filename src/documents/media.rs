//! What a file is: its kind, recognised from its bytes, and a name safe to show.

use serde::{Deserialize, Serialize};

/// Kinds of file accepted, recognised from their first bytes (never from the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MediaType {
    /// `application/pdf`
    #[serde(rename = "application/pdf")]
    Pdf,
    /// `image/png`
    #[serde(rename = "image/png")]
    Png,
    /// `image/jpeg`
    #[serde(rename = "image/jpeg")]
    Jpeg,
}

impl MediaType {
    /// Recognises a file from its first bytes (at least 8 are needed for PNG).
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }

    /// Whether browsers show it as an image.
    pub fn is_image(self) -> bool {
        matches!(self, Self::Png | Self::Jpeg)
    }
}

/// What is known of a stored file (sealed with the fields).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileInfo {
    /// Sanitised original name.
    pub name: String,
    /// Sniffed kind.
    pub media_type: MediaType,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
}

/// Makes a filename safe to show and to put in a header: no path, no control or quote
/// characters, at most 200 characters, never empty.
pub fn sanitise_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\' | '/' | ';' | '<' | '>'))
        .take(200)
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').to_owned();
    if trimmed.is_empty() {
        "document".to_owned()
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds_are_sniffed_from_bytes() {
        assert_eq!(MediaType::sniff(b"%PDF-1.7\n"), Some(MediaType::Pdf));
        assert_eq!(
            MediaType::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(MediaType::Png)
        );
        assert_eq!(
            MediaType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0, 0]),
            Some(MediaType::Jpeg)
        );
        assert_eq!(MediaType::sniff(b"<html><script>"), None);
        assert_eq!(MediaType::sniff(b"MZ\x90\0"), None);
    }

    #[test]
    fn filenames_are_sanitised() {
        assert_eq!(sanitise_filename("../../etc/passwd"), "passwd");
        assert_eq!(
            sanitise_filename("C:\\Users\\x\\营业执照.pdf"),
            "营业执照.pdf"
        );
        assert_eq!(sanitise_filename("a\"b;c\r\n.pdf"), "abc.pdf");
        assert_eq!(sanitise_filename("..."), "document");
        assert_eq!(sanitise_filename(&"x".repeat(500)).chars().count(), 200);
    }
}

/// Property tests: sniffing any bytes never panics, and what is not a PDF, PNG or JPEG is
/// never taken for one.
#[cfg(test)]
mod sniff_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_are_sniffed_without_panic(head in proptest::collection::vec(any::<u8>(), 0..64)) {
            match MediaType::sniff(&head) {
                Some(MediaType::Pdf) => prop_assert!(head.starts_with(b"%PDF-")),
                Some(MediaType::Png) => prop_assert!(head.starts_with(b"\x89PNG\r\n\x1a\n")),
                Some(MediaType::Jpeg) => prop_assert!(head.starts_with(&[0xFF, 0xD8, 0xFF])),
                None => {}
            }
        }
    }
}
