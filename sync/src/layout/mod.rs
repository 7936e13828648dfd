//! OCI image layouts: directories and tarballs (plain, gzip, zstd), in and out of the store.

pub mod entry;
pub mod error;
pub mod export;
pub mod import;

pub use error::LayoutError;
pub use export::{export, ExportOptions, ExportReport, Format};
pub use import::{import_path, import_reader, ImportOptions, ImportReport, ImportedImage};

/// Progress callback: bytes done, bytes total (0 when unknown).
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;
