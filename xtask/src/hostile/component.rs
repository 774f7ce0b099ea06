//! Components made for the campaign: the compile bomb of attack `uploads` (a core
//! module of tens of thousands of small functions wrapped as a component, which the
//! host compiles and then cannot link); the aggregate of attack `start-memory`, whose
//! start function touches every page of its memory at each instantiation (no Rust
//! guest has a start function, so it is written instruction by instruction and made a
//! component by wit-component); and a nonce that makes any component's
//! bytes new, so every upload is compiled again instead of answered from the artifact
//! cache.

use std::path::Path;

use anyhow::Context;
use wasm_encoder::{
    BlockType, CodeSection, Component, ConstExpr, DataSection, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, Instruction, MemArg, MemorySection, MemoryType,
    Module, ModuleSection, StartSection, TypeSection, ValType,
};

/// A component of one core module with `functions` functions of about 100 bytes of
/// code each (`(i32) -> i32`, a chain of adds and multiplies: real work for the
/// compiler, nothing a shape check could call empty).
pub(crate) fn many_functions(functions: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut declared = FunctionSection::new();
    let mut code = CodeSection::new();
    for f in 0..functions {
        declared.function(0);
        let mut body = Function::new([]);
        body.instruction(&Instruction::LocalGet(0));
        for step in 0..24 {
            body.instruction(&Instruction::I32Const((f as i32) ^ step))
                .instruction(if step % 2 == 0 {
                    &Instruction::I32Add
                } else {
                    &Instruction::I32Mul
                });
        }
        body.instruction(&Instruction::End);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&declared).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// An aggregate (world `aggregate` of `wit/cairn.wit`) with a memory of `pages`
/// pages, every page of which its start function writes: each instance faults in
/// `pages × 64 KiB` before its first call. `decide` answers no events and `evolve`
/// keeps the state, so only instantiation costs anything.
///
/// The attacker had four such memories; the host's instance pool holds one
/// memory per core instance (a core module of four is refused at upload), and
/// wit-component lets no adapter define a memory of its own, so four memories would
/// take four core modules linked by hand: not done here.
pub(crate) fn memory_touched_at_start(root: &Path, pages: u64) -> anyhow::Result<Vec<u8>> {
    let mut types = TypeSection::new();
    types.ty().function([], []); // 0: start
    types.ty().function([ValType::I32; 4], [ValType::I32]); // 1: cabi_realloc, evolve
    types.ty().function([], [ValType::I32]); // 2: initial-state
    let mut decide = vec![ValType::I32; 8]; // state, stream-id, command-type, payload
    decide.push(ValType::I64); // issued-at
    types.ty().function(decide, [ValType::I32]); // 3: decide
    let mut functions = FunctionSection::new();
    for ty in [0, 1, 2, 3, 1] {
        functions.function(ty);
    }
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    // The bump pointer of `cabi_realloc`, past the statics of the first page.
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(1 << 16),
    );
    let memarg = |memory_index: u32, align: u32| MemArg {
        offset: 0,
        align,
        memory_index,
    };
    let mut code = CodeSection::new();
    // start: one byte written in every 4 KiB page of the memory.
    let mut start = Function::new([(1, ValType::I32)]);
    {
        start
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::LocalSet(0))
            .instruction(&Instruction::Block(BlockType::Empty))
            .instruction(&Instruction::Loop(BlockType::Empty))
            .instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::I32Const((pages << 16) as i32))
            .instruction(&Instruction::I32GeU)
            .instruction(&Instruction::BrIf(1))
            .instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::I32Store8(memarg(0, 0)))
            .instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::I32Const(4096))
            .instruction(&Instruction::I32Add)
            .instruction(&Instruction::LocalSet(0))
            .instruction(&Instruction::Br(0))
            .instruction(&Instruction::End)
            .instruction(&Instruction::End);
    }
    start.instruction(&Instruction::End);
    code.function(&start);
    // cabi_realloc(old, old_size, align, size): a bump allocator that never frees.
    let mut realloc = Function::new([]);
    realloc
        .instruction(&Instruction::GlobalGet(0))
        .instruction(&Instruction::LocalGet(2))
        .instruction(&Instruction::I32Add)
        .instruction(&Instruction::I32Const(1))
        .instruction(&Instruction::I32Sub)
        .instruction(&Instruction::I32Const(0))
        .instruction(&Instruction::LocalGet(2))
        .instruction(&Instruction::I32Sub)
        .instruction(&Instruction::I32And)
        .instruction(&Instruction::GlobalSet(0))
        .instruction(&Instruction::GlobalGet(0))
        .instruction(&Instruction::GlobalGet(0))
        .instruction(&Instruction::LocalGet(3))
        .instruction(&Instruction::I32Add)
        .instruction(&Instruction::GlobalSet(0))
        .instruction(&Instruction::End);
    code.function(&realloc);
    // initial-state: the list at 32 (pointer 16, length 2: `{}`).
    let mut initial = Function::new([]);
    initial
        .instruction(&Instruction::I32Const(32))
        .instruction(&Instruction::End);
    code.function(&initial);
    // decide: `ok` with no events, the zeroed result at 48.
    let mut decide = Function::new([]);
    decide
        .instruction(&Instruction::I32Const(48))
        .instruction(&Instruction::End);
    code.function(&decide);
    // evolve: the state it was given, written as the list at 64.
    let mut evolve = Function::new([]);
    evolve
        .instruction(&Instruction::I32Const(64))
        .instruction(&Instruction::LocalGet(0))
        .instruction(&Instruction::I32Store(memarg(0, 2)))
        .instruction(&Instruction::I32Const(68))
        .instruction(&Instruction::LocalGet(1))
        .instruction(&Instruction::I32Store(memarg(0, 2)))
        .instruction(&Instruction::I32Const(64))
        .instruction(&Instruction::End);
    code.function(&evolve);
    let mut exports = ExportSection::new();
    exports
        .export("memory", ExportKind::Memory, 0)
        .export("cabi_realloc", ExportKind::Func, 1)
        .export("initial-state", ExportKind::Func, 2)
        .export("decide", ExportKind::Func, 3)
        .export("evolve", ExportKind::Func, 4);
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(16), b"{}".iter().copied());
    data.active(0, &ConstExpr::i32_const(32), [16, 0, 0, 0, 2, 0, 0, 0]);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memories)
        .section(&globals)
        .section(&exports)
        .section(&StartSection { function_index: 0 })
        .section(&code)
        .section(&data);
    let mut module = module.finish();

    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_file(root.join("wit/cairn.wit"))
        .context("reading wit/cairn.wit")?;
    let world = resolve.select_world(&[package], Some("aggregate"))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )?;
    wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
}

/// `bytes` with a custom section holding `nonce` appended: the same code under a new
/// digest. A custom section may follow any section of a module or a component.
pub(crate) fn with_nonce(bytes: &[u8], nonce: u64) -> Vec<u8> {
    let name = b"cairn-hostile-nonce";
    let mut payload = leb(name.len() as u64);
    payload.extend_from_slice(name);
    payload.extend_from_slice(&nonce.to_le_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.extend(leb(payload.len() as u64));
    out.extend(payload);
    out
}

fn leb(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bomb_and_its_nonce_variants_are_valid_components() {
        let bomb = super::many_functions(100);
        let mut features = wasmparser::WasmFeatures::default();
        features.insert(wasmparser::WasmFeatures::COMPONENT_MODEL);
        for bytes in [bomb.clone(), super::with_nonce(&bomb, 7)] {
            wasmparser::Validator::new_with_features(features)
                .validate_all(&bytes)
                .expect("valid");
        }
        assert_ne!(super::with_nonce(&bomb, 1), super::with_nonce(&bomb, 2));
    }

    #[test]
    fn the_start_memory_aggregate_is_a_component_of_the_aggregate_world() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let bytes = super::memory_touched_at_start(root, 16).expect("componentized");
        let mut features = wasmparser::WasmFeatures::default();
        features.insert(wasmparser::WasmFeatures::COMPONENT_MODEL);
        wasmparser::Validator::new_with_features(features)
            .validate_all(&bytes)
            .expect("valid");
    }
}
