//! A plugin claiming ABI version 999 behind the v1 entry symbol. Its descriptor is only the two
//! leading u32s, placed at an address that is 4- but not 8-byte aligned: the host must read the
//! version (assuming no more than u32 alignment), refuse, and read nothing more.

#[repr(C)]
pub struct FutureDescriptor {
    abi_version: u32,
    struct_size: u32,
}

/// Puts the descriptor at offset 4 of an 8-aligned static.
#[repr(C, align(8))]
pub struct Placed {
    _pad: u32,
    descriptor: FutureDescriptor,
}

static PLACED: Placed = Placed {
    _pad: 0,
    descriptor: FutureDescriptor {
        abi_version: 999,
        struct_size: 8,
    },
};

/// # Safety
/// Called by the ardpipe host; ignores its argument.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ardpipe_plugin_v1(_host: *const u8) -> *const FutureDescriptor {
    &PLACED.descriptor
}
