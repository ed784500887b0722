//! Scan-and-snap measures on the heads of a physics run (filled in below).
