//! What a peer of the socket can make the sidecar spend. Every app of the pod
//! reaches the socket, so these hold for hostile ones too; README.md
//! "Limits" states them. Per-call limits (frame size, attributes, output
//! sizes) are shared with the shim in `hsmbridge_proto::limits`.

use std::time::Duration;

/// Connections open at once. When full, a new connection takes the place of
/// the oldest one that has not said hello yet or that is idle in an
/// application without sessions; if there is none, it is refused.
pub const MAX_CONNECTIONS: usize = 1024;

/// Time from connect to a complete Hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Time from a frame's first byte to its last, and to write one answer.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time a connection may sit idle between calls before it is closed,
/// unless it is the last connection of an application with open sessions
/// (`hsm-sidecar serve --idle-timeout-secs`). The shim reopens a connection
/// it has not used for that long before using it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes of request frames held by all connections together beyond the first
/// [`BASE_BUFFER`] of each. A frame that would pass it is read and dropped,
/// and answered `CKR_HOST_MEMORY`.
pub const MAX_BYTES_IN_FLIGHT: usize = 16 << 20;

/// What every connection may buffer without drawing on [`MAX_BYTES_IN_FLIGHT`]
/// (a small call fits; hello, sign, random, attributes).
pub const BASE_BUFFER: usize = 8 << 10;
