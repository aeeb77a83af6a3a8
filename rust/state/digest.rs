//! The deterministic state digest.
//!
//! `digest = BLAKE3(postcard(canonical image))`: the image lists tasks and runs by creation
//! sequence (see `image`), so two projections built from the same events have the same digest
//! whatever their hash maps' iteration order; a projection decoded from a snapshot has the
//! same digest as the one encoded. Derived data (indexes, counters) is not hashed: it is a
//! function of what is.

use postcard::ser_flavors::Flavor;

use super::Projection;

/// A 32-byte BLAKE3 digest of a projection's canonical image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Streams postcard output into the hasher through a buffer (no full-size encoding in memory).
struct HashFlavor {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

const BUF: usize = 64 * 1024;

impl Flavor for HashFlavor {
    type Output = blake3::Hash;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.buf.len() + data.len() > BUF {
            self.hasher.update(&self.buf);
            self.buf.clear();
            if data.len() > BUF {
                self.hasher.update(data);
                return Ok(());
            }
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(mut self) -> postcard::Result<blake3::Hash> {
        self.hasher.update(&self.buf);
        Ok(self.hasher.finalize())
    }
}

impl Projection {
    /// The deterministic digest of everything persisted in this projection, including the
    /// latest sequence and the pause flag.
    pub fn state_digest(&self) -> Digest {
        let flavor = HashFlavor {
            hasher: blake3::Hasher::new(),
            buf: Vec::with_capacity(BUF),
        };
        // Serializing plain structs into an infallible sink cannot fail; if it ever did, hash
        // the error text so the digest still differs from any real state's.
        match postcard::serialize_with_flavor(&self.image(), flavor) {
            Ok(h) => Digest(*h.as_bytes()),
            Err(e) => Digest(*blake3::hash(e.to_string().as_bytes()).as_bytes()),
        }
    }
}
