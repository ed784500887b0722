//! Max-margin alignment of physics-model heads (filled in below).
