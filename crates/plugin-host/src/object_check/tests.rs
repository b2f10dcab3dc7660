//! The header check on crafted bytes: minimal ELF, Mach-O and PE headers built here, one
//! field at a time. Real libraries (and one with its `e_machine` changed) are checked end to
//! end in `tests/plugins.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

/// A minimal 64-byte ELF header.
fn elf(class: u8, data: u8, e_type: u16, machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = data;
    h[6] = 1;
    let put = |h: &mut Vec<u8>, at: usize, v: u16| {
        let b = if data == 2 {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        h[at..at + 2].copy_from_slice(&b);
    };
    put(&mut h, 16, e_type);
    put(&mut h, 18, machine);
    h
}

/// A minimal PE image header with the given machine and characteristics.
fn pe(machine: u16, characteristics: u16) -> Vec<u8> {
    let mut h = vec![0u8; 256];
    h[..2].copy_from_slice(b"MZ");
    h[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    h[0x80..0x84].copy_from_slice(b"PE\0\0");
    h[0x84..0x86].copy_from_slice(&machine.to_le_bytes());
    h[0x96..0x98].copy_from_slice(&characteristics.to_le_bytes());
    h
}

fn macho(cputype: u32, filetype: u32) -> Vec<u8> {
    let mut h = vec![0u8; 32];
    h[..4].copy_from_slice(&[0xCF, 0xFA, 0xED, 0xFE]);
    h[4..8].copy_from_slice(&cputype.to_le_bytes());
    h[12..16].copy_from_slice(&filetype.to_le_bytes());
    h
}

#[test]
fn files_that_are_not_shared_libraries_are_named_as_such() {
    for head in [
        &b"#!/bin/sh\necho hi\n"[..],
        b"",
        b"\x7fEL",
        &elf(2, 1, 2, 62),
        &elf(2, 1, 1, 62),
        &elf(2, 1, 3, 62)[..18],
        &pe(0x8664, 0x0002),
        b"MZ\0\0",
        &macho(0x0100_0007, 2),
    ] {
        assert!(
            matches!(check_header(head), Err(LoadProblem::NotSharedLibrary(_))),
            "{:?}",
            head.get(..8)
        );
    }
    let Err(e) = check_header(b"hello") else {
        panic!()
    };
    assert_eq!(
        e.to_string(),
        "not a shared library: it has no ELF, Mach-O or PE header"
    );
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn libraries_for_another_platform_are_named_with_theirs() {
    assert!(check_header(&elf(2, 1, 3, 62)).is_ok());
    let wrong = |head: &[u8]| match check_header(head) {
        Err(LoadProblem::WrongArchitecture { found, expected }) => {
            assert_eq!(expected, "an ELF shared library for x86-64 (64-bit)");
            found
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        wrong(&elf(2, 1, 3, 183)),
        "an ELF shared library for aarch64 (64-bit)"
    );
    assert_eq!(
        wrong(&elf(1, 1, 3, 3)),
        "an ELF shared library for x86 (32-bit)"
    );
    assert_eq!(
        wrong(&elf(2, 2, 3, 21)),
        "an ELF shared library for powerpc64 (64-bit, big-endian)"
    );
    assert_eq!(
        wrong(&elf(2, 1, 3, 0x1234)),
        "an ELF shared library for machine 0x1234 (64-bit)"
    );
    assert_eq!(
        wrong(&pe(0x8664, 0x2022)),
        "a Windows DLL for x86-64 (64-bit)"
    );
    assert_eq!(
        wrong(&macho(0x0100_000C, 6)),
        "a Mach-O dylib for aarch64 (64-bit)"
    );
    assert_eq!(
        wrong(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 2]),
        "a universal Mach-O binary"
    );
}
