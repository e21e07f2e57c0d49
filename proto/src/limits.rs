//! What one PKCS#11 call may carry between the shim and the sidecar. Both
//! sides use these numbers: the shim refuses a call that does not fit before
//! sending it, and the sidecar refuses (or closes the connection on) anything
//! past them before the module sees it. README.md "Limits" states them.

/// Largest data input or output buffer one call carries (a C_Encrypt's
/// plaintext, a signature buffer, C_GenerateRandom's length), and the sum of
/// the value buffers of one C_GetAttributeValue. Larger single-part calls get
/// `CKR_HOST_MEMORY`; multi-part operations (`*Update`) stream any size.
pub const MAX_DATA: usize = 1 << 20;

/// Largest frame either side accepts: one `MAX_DATA` buffer plus the rest of
/// the message. A longer length prefix closes the connection.
pub const MAX_FRAME: usize = MAX_DATA + (64 << 10);

/// Attributes in all the templates of one request, nested ones included
/// (real calls use tens; an object has about fifty).
pub const MAX_ATTRIBUTES: usize = 1024;

/// Templates inside templates: PKCS#11 defines one level (`CKA_WRAP_TEMPLATE`
/// holding an attribute list); one more is tolerated.
pub const MAX_NESTING: usize = 2;

/// Entries of one slot or mechanism list, and handles of one C_FindObjects.
pub const MAX_LIST: usize = 4096;
