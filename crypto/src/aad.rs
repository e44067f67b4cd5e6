/// Associated data: the context a ciphertext belongs to.
///
/// Encoding: `"custodia-aad/1" ‖ lp(label) ‖ (lp(name) ‖ lp(value))*`, where `lp(x)` is the
/// 4-byte big-endian length of `x` followed by `x`. Length prefixes make the encoding
/// injective: two different contexts never produce the same bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Aad {
    bytes: Vec<u8>,
}

impl Aad {
    /// A context with a purpose label such as `"document-fields"` or `"vault-key"`.
    pub fn new(label: &'static str) -> Self {
        let mut bytes = b"custodia-aad/1".to_vec();
        push_lp(&mut bytes, label.as_bytes());
        Self { bytes }
    }

    /// Binds one more named value (an id, a version, an owner) into the context.
    #[must_use]
    pub fn with(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Self {
        push_lp(&mut self.bytes, name.as_bytes());
        push_lp(&mut self.bytes, value.as_ref());
        self
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for Aad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aad({} bytes)", self.bytes.len())
    }
}

fn push_lp(out: &mut Vec<u8>, value: &[u8]) {
    // Values are ids and labels; anything near 4 GiB is a programming error, and the
    // saturated length still keeps distinct inputs distinct in practice.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_injective_across_boundaries() {
        let a = Aad::new("x").with("a", "bc");
        let b = Aad::new("x").with("ab", "c");
        assert_ne!(a, b);
        assert_ne!(
            Aad::new("doc").with("id", "1"),
            Aad::new("do").with("cid", "1")
        );
    }
}
