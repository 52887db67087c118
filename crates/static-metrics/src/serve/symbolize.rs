//! Turning a profile's addresses into functions, files and lines, after the profile: the
//! executable's DWARF (the `addr2line` crate over `/proc/self/exe`, mapped for the call and
//! unmapped after), its symbol table where DWARF has nothing, and `dladdr` for the shared
//! libraries. Everything built here is dropped when [`symbolize`] returns, so the parsed debug
//! information (the ~90 MB the `backtrace` crate used to keep for the life of the process) is
//! only ever held while a profile is being built.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};

use addr2line::gimli;
use object::{Object as _, ObjectSection as _};

/// One executable segment of a loaded object, as pprof's `Mapping` describes it.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub(crate) start: u64,
    pub(crate) limit: u64,
    pub(crate) file_offset: u64,
    /// Index into [`Symbolized::objects`].
    pub(crate) object: usize,
}

/// A loaded object (the executable, a shared library, the vDSO).
#[derive(Clone, Debug)]
pub(crate) struct LoadedObject {
    pub(crate) path: String,
    /// Run-time address minus file address (PIE and shared libraries load anywhere).
    bias: u64,
    main: bool,
}

/// One frame of a location, innermost (inlined) first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Frame {
    /// Demangled, without the hash.
    pub(crate) function: String,
    pub(crate) file: String,
    pub(crate) line: u32,
}

/// What [`symbolize`] found.
pub(crate) struct Symbolized {
    pub(crate) objects: Vec<LoadedObject>,
    pub(crate) segments: Vec<Segment>,
    /// Per address: its segment (index into `segments`) and frames, innermost first (empty
    /// when nothing names it).
    pub(crate) frames: HashMap<u64, (Option<usize>, Vec<Frame>)>,
}

/// Resolves every address of `addresses`.
pub(crate) fn symbolize(addresses: impl IntoIterator<Item = u64>) -> Symbolized {
    let (objects, mut segments) = loaded_objects();
    segments.sort_by_key(|s| s.start);
    let main = objects.iter().position(|o| o.main);
    let exe = main.and_then(|_| ExeFile::open());
    let debug = exe.as_ref().and_then(|f| Debug::load(f.bytes()));
    let mut frames = HashMap::new();
    for address in addresses {
        if frames.contains_key(&address) {
            continue;
        }
        let segment = segments
            .partition_point(|s| s.start <= address)
            .checked_sub(1)
            .filter(|&i| address < segments[i].limit);
        let resolved = match segment.map(|i| &objects[segments[i].object]) {
            Some(object) if object.main => debug
                .as_ref()
                .map(|d| d.frames(address.wrapping_sub(object.bias)))
                .unwrap_or_default(),
            _ => dynamic_symbol(address).into_iter().collect(),
        };
        frames.insert(address, (segment, resolved));
    }
    Symbolized {
        objects,
        segments,
        frames,
    }
}

/// The readable form of a symbol: demangled without the hash when it is a Rust symbol.
pub(crate) fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        // `{:#}` leaves the hash out.
        Ok(symbol) => format!("{symbol:#}"),
        Err(_) => name.to_string(),
    }
}

/// The executable's DWARF and symbol table, borrowed from its mapping.
struct Debug<'a> {
    context: Option<addr2line::Context<gimli::EndianSlice<'a, gimli::RunTimeEndian>>>,
    symbols: object::SymbolMap<object::SymbolMapName<'a>>,
    path: String,
}

impl<'a> Debug<'a> {
    fn load(data: &'a [u8]) -> Option<Debug<'a>> {
        let file = object::File::parse(data).ok()?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let section = |id: gimli::SectionId| -> Result<_, gimli::Error> {
            let data = file
                .section_by_name(id.name())
                .and_then(|s| s.data().ok())
                .unwrap_or(&[]);
            Ok(gimli::EndianSlice::new(data, endian))
        };
        let context = gimli::Dwarf::load(section)
            .ok()
            .and_then(|dwarf| addr2line::Context::from_dwarf(dwarf).ok());
        Some(Debug {
            context,
            symbols: file.symbol_map(),
            path: exe_path(),
        })
    }

    /// Frames at file address `probe`, innermost first; the symbol table's name when DWARF
    /// has no function there.
    fn frames(&self, probe: u64) -> Vec<Frame> {
        let mut out = Vec::new();
        if let Some(context) = &self.context {
            if let Ok(mut iter) = context.find_frames(probe).skip_all_loads() {
                while let Ok(Some(frame)) = iter.next() {
                    let Some(function) = frame.function.as_ref().and_then(|f| f.raw_name().ok())
                    else {
                        continue;
                    };
                    let (file, line) = frame
                        .location
                        .map(|l| (l.file.unwrap_or_default().to_string(), l.line.unwrap_or(0)))
                        .unwrap_or_default();
                    out.push(Frame {
                        function: demangle(&function),
                        file,
                        line,
                    });
                }
            }
        }
        if out.is_empty() {
            if let Some(symbol) = self.symbols.containing(probe) {
                out.push(Frame {
                    function: demangle(symbol.name()),
                    file: self.path.clone(),
                    line: 0,
                });
            }
        }
        out
    }
}

/// The name of the exported symbol at or below `address` in a shared object (the vDSO,
/// libc, libgcc), with the object as its file.
fn dynamic_symbol(address: u64) -> Option<Frame> {
    // SAFETY: a zeroed Dl_info is valid; dladdr fills it and its strings live as long as the
    // object stays loaded (they are copied right away).
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(address as usize as *const c_void, &mut info) == 0
            || info.dli_sname.is_null()
        {
            return None;
        }
        let file = if info.dli_fname.is_null() {
            String::new()
        } else {
            CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned()
        };
        Some(Frame {
            function: demangle(&CStr::from_ptr(info.dli_sname).to_string_lossy()),
            file,
            line: 0,
        })
    }
}

fn exe_path() -> String {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/proc/self/exe".to_string())
}

/// The loaded objects and their executable segments, from the dynamic loader's own list
/// (`dl_iterate_phdr`): exact load biases, no parsing of `/proc/self/maps`.
fn loaded_objects() -> (Vec<LoadedObject>, Vec<Segment>) {
    struct Found {
        objects: Vec<LoadedObject>,
        segments: Vec<Segment>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info for the duration of the call; `data` is the
        // `Found` below.
        let (info, found) = unsafe { (&*info, &mut *data.cast::<Found>()) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string owned by the loader.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        // The first object is the executable, named "".
        let main = found.objects.is_empty();
        let index = found.objects.len();
        found.objects.push(LoadedObject {
            path: if main { exe_path() } else { name },
            bias: info.dlpi_addr,
            main,
        });
        for i in 0..usize::from(info.dlpi_phnum) {
            // SAFETY: dlpi_phdr has dlpi_phnum entries.
            let header = unsafe { &*info.dlpi_phdr.add(i) };
            if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
                let start = info.dlpi_addr.wrapping_add(header.p_vaddr);
                found.segments.push(Segment {
                    start,
                    limit: start.wrapping_add(header.p_memsz),
                    file_offset: header.p_offset,
                    object: index,
                });
            }
        }
        0
    }
    let mut found = Found {
        objects: Vec::new(),
        segments: Vec::new(),
    };
    // SAFETY: `each` matches the callback type and only touches `found`.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut found as *mut Found).cast()) };
    (found.objects, found.segments)
}

/// `/proc/self/exe` mapped read-only for the duration of one symbolization: its pages are the
/// page cache's, and unmapping leaves nothing resident in this process.
struct ExeFile {
    base: *mut c_void,
    len: usize,
}

impl ExeFile {
    fn open() -> Option<ExeFile> {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::File::open("/proc/self/exe").ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a private read-only mapping of a regular file we opened.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (base != libc::MAP_FAILED).then_some(ExeFile { base, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: mapped readable for `len` bytes until drop.
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>(), self.len) }
    }
}

impl Drop for ExeFile {
    fn drop(&mut self) {
        // SAFETY: mapped by `open`; every borrow of `bytes` ended (they borrow `self`).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_known_function() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn a_function_of_ours_resolves_by_its_demangled_name() {
        let address = a_known_function as *const () as u64;
        let found = symbolize([address]);
        let (segment, frames) = &found.frames[&address];
        assert!(
            segment.is_some(),
            "address outside every executable segment"
        );
        let object = &found.objects[found.segments[segment.unwrap()].object];
        assert!(object.main);
        assert!(
            frames
                .iter()
                .any(|f| f.function.ends_with("symbolize::tests::a_known_function")),
            "{frames:?}"
        );
        assert!(frames
            .iter()
            .any(|f| f.file.ends_with("symbolize.rs") && f.line > 0));
    }

    #[test]
    fn libc_resolves_through_dladdr_and_unknown_addresses_to_nothing() {
        let address = libc::getpid as *const () as u64;
        let found = symbolize([address, 8]);
        assert!(
            found.frames[&address]
                .1
                .iter()
                .any(|f| f.function.contains("getpid")),
            "{:?}",
            found.frames[&address]
        );
        assert_eq!(found.frames[&8], (None, Vec::new()));
    }

    #[test]
    fn demangling_drops_the_hash_and_keeps_other_names() {
        assert_eq!(
            demangle("_ZN5tokio4time5sleep17h0123456789abcdefE"),
            "tokio::time::sleep"
        );
        assert_eq!(demangle("_RNvCs1234_7mycrate4main"), "mycrate::main");
        assert_eq!(demangle("memcpy"), "memcpy");
    }
}
