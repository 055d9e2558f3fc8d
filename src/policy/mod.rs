//! The RegistryCleanupPolicy resource: its types, patterns, validation and loading.

pub mod compiled;
pub mod load;
pub mod pattern;
pub mod reference;
pub mod spec;
pub mod status;

pub use compiled::{CompiledPolicy, CompiledRule, InvalidPolicy, compile};
pub use spec::*;
pub use status::*;
