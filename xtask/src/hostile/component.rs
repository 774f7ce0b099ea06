//! Components made for the campaign: the compile bomb of attack `uploads` (a core
//! module of tens of thousands of small functions wrapped as a component, which the
//! host compiles and then cannot link), and a nonce that makes any component's bytes
//! new, so every upload is compiled again instead of answered from the artifact cache.

use wasm_encoder::{
    CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection,
    TypeSection, ValType,
};

/// A component of one core module with `functions` functions of about 100 bytes of
/// code each (`(i32) -> i32`, a chain of adds and multiplies: real work for the
/// compiler, nothing a shape check could call empty).
pub fn many_functions(functions: u32) -> Vec<u8> {
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

/// `bytes` with a custom section holding `nonce` appended: the same code under a new
/// digest. A custom section may follow any section of a module or a component.
pub fn with_nonce(bytes: &[u8], nonce: u64) -> Vec<u8> {
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
}
