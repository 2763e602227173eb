//! Links the agent with packed relative relocations (DT_RELR, glibc 2.36 and
//! later): a position-independent binary carries one relocation per pointer
//! in its read-only data, and the loader reads every one at start, so the
//! packed form keeps about 350 KB of relocation entries out of the agent's
//! resident memory on every node.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
