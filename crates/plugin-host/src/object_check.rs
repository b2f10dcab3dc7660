//! The object-file check: is a file a shared library this process can load?
//!
//! [`check_header`] looks at the first [`HEADER_BYTES`] of a file, read before the dynamic
//! loader sees it ([`load`](crate::load)), so that a file that is not a shared library, or is one for another architecture or
//! operating system, is refused with a message that names what it is — without opening it,
//! and so without running any of its code.
//!
//! # Why the fields are read by hand
//!
//! The header layouts and numbers come from the `object` crate: the field offsets are taken
//! with `offset_of!` from its `#[repr(C)]` header structs (`object::elf`, `object::macho`,
//! `object::pe`), and the magic numbers, file types, flags and machine numbers are its
//! constants. Its *readers* are not used: they do not fit a check that sees only those bytes
//! and says in each case what the file is:
//!
//! * `object::File::parse` and the per-format file parsers read the whole file (program and
//!   section headers, load commands, PE data directories), well beyond the bytes read here;
//! * the header-only readers need the whole header struct and validate more than this check
//!   needs: `elf::FileHeader::parse` takes all 52 or 64 bytes and refuses an identification
//!   whose class, data or version byte it does not know, and `ImageNtHeaders::parse` needs the
//!   full optional header with a valid magic. A header that ends after the fields read here,
//!   or has an unusual identification byte, would get another message than it does now, and
//!   the crafted headers in this module's tests (a PE image without an optional header) would
//!   no longer parse.
//!
//! So the check reads the few fields it needs (two to four per format) at `object`'s offsets,
//! with bounds-checked slicing: a header cut short before a field it needs is
//! [`LoadProblem::NotSharedLibrary`] ("its header is truncated"), and no input panics.

use std::mem::offset_of;

use object::{elf, macho, pe, LittleEndian};

use crate::LoadProblem;

/// How many leading bytes [`check_header`] is given (a PE header sits at an offset stored at
/// byte 0x3C, in practice well inside the first KiB).
pub(crate) const HEADER_BYTES: u64 = 4096;

/// ELF identification bytes: the class (32- or 64-bit) and the data encoding (byte order).
const EI_CLASS: usize = offset_of!(elf::Ident, class);
const EI_DATA: usize = offset_of!(elf::Ident, data);
/// `e_type` and `e_machine`, at the same offsets in 32- and 64-bit ELF headers.
const E_TYPE: usize = offset_of!(elf::FileHeader64<LittleEndian>, e_type);
const E_MACHINE: usize = offset_of!(elf::FileHeader64<LittleEndian>, e_machine);
const _: () = assert!(
    E_TYPE == offset_of!(elf::FileHeader32<LittleEndian>, e_type)
        && E_MACHINE == offset_of!(elf::FileHeader32<LittleEndian>, e_machine)
);

/// Mach-O `cputype` and `filetype`, at the same offsets in 32- and 64-bit headers.
const CPUTYPE: usize = offset_of!(macho::MachHeader64<LittleEndian>, cputype);
const FILETYPE: usize = offset_of!(macho::MachHeader64<LittleEndian>, filetype);
const _: () = assert!(
    CPUTYPE == offset_of!(macho::MachHeader32<LittleEndian>, cputype)
        && FILETYPE == offset_of!(macho::MachHeader32<LittleEndian>, filetype)
);
/// The Mach-O magic numbers as a little-endian file stores them (big-endian Mach-O files are
/// not recognised).
const MACHO_64_MAGIC: [u8; 4] = macho::MH_MAGIC_64.to_le_bytes();
const MACHO_32_MAGIC: [u8; 4] = macho::MH_MAGIC.to_le_bytes();
/// A universal binary's magic, stored big-endian.
const FAT_MAGIC: [u8; 4] = macho::FAT_MAGIC.to_be_bytes();

/// PE: the DOS header's `MZ`, the offset of the NT headers at 0x3C, and, from there, the
/// `PE\0\0` signature and the COFF file header's `Machine` and `Characteristics`.
const DOS_MAGIC: [u8; 2] = pe::IMAGE_DOS_SIGNATURE.to_le_bytes();
const E_LFANEW: usize = offset_of!(pe::ImageDosHeader, e_lfanew);
const PE_SIGNATURE: [u8; 4] = pe::IMAGE_NT_SIGNATURE.to_le_bytes();
const PE_MACHINE: usize =
    offset_of!(pe::ImageNtHeaders64, file_header) + offset_of!(pe::ImageFileHeader, machine);
const PE_CHARACTERISTICS: usize = offset_of!(pe::ImageNtHeaders64, file_header)
    + offset_of!(pe::ImageFileHeader, characteristics);

/// Object formats of shared libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectFormat {
    Elf,
    MachO,
    Pe,
}

impl ObjectFormat {
    const fn phrase(self) -> &'static str {
        match self {
            ObjectFormat::Elf => "an ELF shared library",
            ObjectFormat::MachO => "a Mach-O dylib",
            ObjectFormat::Pe => "a Windows DLL",
        }
    }
}

/// This platform's object format.
const HOST_FORMAT: ObjectFormat = if cfg!(target_vendor = "apple") {
    ObjectFormat::MachO
} else if cfg!(windows) {
    ObjectFormat::Pe
} else {
    ObjectFormat::Elf
};

/// An architecture the header check knows, by its number in each object format (`None`: the
/// format has no number for it).
struct Arch {
    name: &'static str,
    elf: u16,
    macho: Option<u32>,
    pe: Option<u16>,
}

/// Architectures the header check knows (numbers from the ELF gABI, `<mach/machine.h>` and the
/// PE/COFF "Machine Types" table, as `object` names them).
const ARCHES: &[Arch] = &[
    Arch {
        name: "x86-64",
        elf: elf::EM_X86_64,
        macho: Some(macho::CPU_TYPE_X86_64),
        pe: Some(pe::IMAGE_FILE_MACHINE_AMD64),
    },
    Arch {
        name: "aarch64",
        elf: elf::EM_AARCH64,
        macho: Some(macho::CPU_TYPE_ARM64),
        pe: Some(pe::IMAGE_FILE_MACHINE_ARM64),
    },
    Arch {
        name: "x86",
        elf: elf::EM_386,
        macho: Some(macho::CPU_TYPE_X86),
        pe: Some(pe::IMAGE_FILE_MACHINE_I386),
    },
    Arch {
        name: "arm",
        elf: elf::EM_ARM,
        macho: Some(macho::CPU_TYPE_ARM),
        pe: Some(pe::IMAGE_FILE_MACHINE_ARMNT),
    },
    Arch {
        name: "riscv",
        elf: elf::EM_RISCV,
        // 64-bit RISC-V (`CPU_ARCH_ABI64 | 0x18`); `object` 0.39 has no constant for it.
        macho: Some(macho::CPU_ARCH_ABI64 | 0x18),
        pe: Some(pe::IMAGE_FILE_MACHINE_RISCV64),
    },
    Arch {
        name: "powerpc64",
        elf: elf::EM_PPC64,
        macho: Some(macho::CPU_TYPE_POWERPC64),
        pe: None,
    },
    Arch {
        name: "s390x",
        elf: elf::EM_S390,
        macho: None,
        pe: None,
    },
];

/// This build's architecture name, if [`ARCHES`] has it (elsewhere the header check leaves
/// the architecture to the dynamic loader).
const HOST_ARCH: Option<&str> = if cfg!(target_arch = "x86_64") {
    Some("x86-64")
} else if cfg!(target_arch = "aarch64") {
    Some("aarch64")
} else if cfg!(target_arch = "x86") {
    Some("x86")
} else if cfg!(target_arch = "arm") {
    Some("arm")
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    Some("riscv")
} else if cfg!(target_arch = "powerpc64") {
    Some("powerpc64")
} else if cfg!(target_arch = "s390x") {
    Some("s390x")
} else {
    None
};

/// The architecture called `machine` in `format`'s numbering.
fn arch_name(format: ObjectFormat, machine: u32) -> Option<&'static str> {
    ARCHES
        .iter()
        .find(|a| match format {
            ObjectFormat::Elf => u32::from(a.elf) == machine,
            ObjectFormat::MachO => a.macho == Some(machine),
            ObjectFormat::Pe => a.pe.map(u32::from) == Some(machine),
        })
        .map(|a| a.name)
}

/// What this weightkin loads, in words.
fn host_description() -> String {
    let bits = if cfg!(target_pointer_width = "64") {
        "64"
    } else {
        "32"
    };
    match HOST_ARCH {
        Some(arch) => format!("{} for {arch} ({bits}-bit)", HOST_FORMAT.phrase()),
        None => format!("{} ({bits}-bit)", HOST_FORMAT.phrase()),
    }
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    })
}

fn u32_le_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// What a shared library's header says about the machine it was built for.
struct Target {
    format: ObjectFormat,
    /// The machine number, in `format`'s numbering.
    machine: u32,
    /// 64-bit.
    wide: bool,
    big_endian: bool,
}

const TRUNCATED: LoadProblem = LoadProblem::NotSharedLibrary("its header is truncated");

/// Checks the leading bytes of a file: it must be a shared library (ELF `ET_DYN`, Mach-O
/// `MH_DYLIB`/`MH_BUNDLE`, or a PE DLL) in this platform's object format, for this
/// architecture, word size and byte order. Fields: ELF gABI ch. 4 (`e_ident`, `e_type`,
/// `e_machine`), `<mach-o/loader.h>` (`cputype`, `filetype`), PE/COFF spec (the signature
/// offset at 0x3C, then `Machine` and `Characteristics`); the module docs say why they are
/// read by hand.
pub fn check_header(head: &[u8]) -> Result<(), LoadProblem> {
    let target = if head.starts_with(&elf::ELFMAG) {
        elf_target(head)?
    } else if head.starts_with(&MACHO_64_MAGIC) {
        macho_target(head, true)?
    } else if head.starts_with(&MACHO_32_MAGIC) {
        macho_target(head, false)?
    } else if head.starts_with(&FAT_MAGIC) {
        // A universal (fat) Mach-O binary: the loader picks this machine's slice.
        if HOST_FORMAT == ObjectFormat::MachO {
            return Ok(());
        }
        return Err(LoadProblem::WrongArchitecture {
            found: "a universal Mach-O binary".to_owned(),
            expected: host_description(),
        });
    } else if head.starts_with(&DOS_MAGIC) {
        pe_target(head)?
    } else {
        return Err(LoadProblem::NotSharedLibrary(
            "it has no ELF, Mach-O or PE header",
        ));
    };
    let Target {
        format,
        machine,
        wide,
        big_endian,
    } = target;
    let arch = arch_name(format, machine);
    let matches = format == HOST_FORMAT
        && wide == cfg!(target_pointer_width = "64")
        && big_endian == cfg!(target_endian = "big")
        && (HOST_ARCH.is_none() || arch == HOST_ARCH);
    if matches {
        return Ok(());
    }
    let arch = arch.map_or_else(|| format!("machine {machine:#x}"), str::to_owned);
    let bits = if wide { 64 } else { 32 };
    let order = if big_endian { ", big-endian" } else { "" };
    Err(LoadProblem::WrongArchitecture {
        found: format!("{} for {arch} ({bits}-bit{order})", format.phrase()),
        expected: host_description(),
    })
}

/// An ELF header (after its magic): must be `ET_DYN`. Any class other than `ELFCLASS64`
/// counts as 32-bit and any data encoding other than `ELFDATA2MSB` as little-endian.
fn elf_target(head: &[u8]) -> Result<Target, LoadProblem> {
    let (Some(&class), Some(&data)) = (head.get(EI_CLASS), head.get(EI_DATA)) else {
        return Err(TRUNCATED);
    };
    let big_endian = data == elf::ELFDATA2MSB;
    let (Some(e_type), Some(e_machine)) = (
        u16_at(head, E_TYPE, big_endian),
        u16_at(head, E_MACHINE, big_endian),
    ) else {
        return Err(TRUNCATED);
    };
    if e_type != elf::ET_DYN {
        return Err(LoadProblem::NotSharedLibrary(
            "an ELF executable, object or core file, not a shared library (ET_DYN)",
        ));
    }
    Ok(Target {
        format: ObjectFormat::Elf,
        machine: u32::from(e_machine),
        wide: class == elf::ELFCLASS64,
        big_endian,
    })
}

/// A little-endian Mach-O header (after its magic): must be a dylib or a bundle.
fn macho_target(head: &[u8], wide: bool) -> Result<Target, LoadProblem> {
    let (Some(cputype), Some(filetype)) = (u32_le_at(head, CPUTYPE), u32_le_at(head, FILETYPE))
    else {
        return Err(TRUNCATED);
    };
    if filetype != macho::MH_DYLIB && filetype != macho::MH_BUNDLE {
        return Err(LoadProblem::NotSharedLibrary(
            "a Mach-O file that is not a dylib or bundle",
        ));
    }
    Ok(Target {
        format: ObjectFormat::MachO,
        machine: cputype,
        wide,
        big_endian: false,
    })
}

/// A PE image (after the DOS magic): must have a PE header and be a DLL.
fn pe_target(head: &[u8]) -> Result<Target, LoadProblem> {
    let at = u32_le_at(head, E_LFANEW).ok_or(TRUNCATED)?;
    let at = usize::try_from(at).unwrap_or(usize::MAX);
    if head.get(at..at.saturating_add(PE_SIGNATURE.len())) != Some(&PE_SIGNATURE[..]) {
        return Err(LoadProblem::NotSharedLibrary(
            "an MS-DOS executable without a PE header",
        ));
    }
    let (Some(machine), Some(characteristics)) = (
        u16_at(head, at.saturating_add(PE_MACHINE), false),
        u16_at(head, at.saturating_add(PE_CHARACTERISTICS), false),
    ) else {
        return Err(TRUNCATED);
    };
    if characteristics & pe::IMAGE_FILE_DLL == 0 {
        return Err(LoadProblem::NotSharedLibrary("a PE executable, not a DLL"));
    }
    Ok(Target {
        format: ObjectFormat::Pe,
        machine: u32::from(machine),
        // IMAGE_FILE_32BIT_MACHINE marks 32-bit images.
        wide: characteristics & pe::IMAGE_FILE_32BIT_MACHINE == 0,
        big_endian: false,
    })
}

#[cfg(test)]
mod tests;
