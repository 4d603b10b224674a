//! What identifies one lease on the servers, shared by its guard and any request in flight.

use crate::keys::Keys;
use crate::token::Token;

/// The keys and the token of one lease. Requests hold it through an `Arc`, so that those still
/// in flight when a round is decided can finish in the background.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) name: String,
    pub(crate) keys: Keys,
    pub(crate) token: Token,
}
