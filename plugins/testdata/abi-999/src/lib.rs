//! A plugin claiming ABI version 999 behind the v1 entry symbol. Its descriptor is only the two
//! leading u32s: the host must read the version, refuse, and read nothing more.

#[repr(C)]
pub struct FutureDescriptor {
    abi_version: u32,
    struct_size: u32,
}

static DESCRIPTOR: FutureDescriptor = FutureDescriptor {
    abi_version: 999,
    struct_size: 8,
};

/// # Safety
/// Called by the ardpipe host; ignores its argument.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ardpipe_plugin_v1(_host: *const u8) -> *const FutureDescriptor {
    &DESCRIPTOR
}
