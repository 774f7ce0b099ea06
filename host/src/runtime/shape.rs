//! The shape of an uploaded component, read before anything is compiled: a component
//! the pool could never instantiate, or one whose functions would keep cranelift busy
//! for minutes, is refused at once instead of after the compile.

use wasmparser::{Instance, Parser, Payload};

use super::{
    InvalidPlugin, MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT,
    MAX_TABLES_PER_COMPONENT,
};

/// Largest function body. Compile time grows faster than linearly with a function's
/// size; the largest function of a Rust plugin is tens of KiB.
pub const MAX_FUNCTION_BYTES: usize = 2 << 20;
/// Most functions, across every module of the component.
pub const MAX_FUNCTIONS: usize = 200_000;
/// Most locals one function may declare.
pub const MAX_LOCALS: u64 = 50_000;

/// Bytes of the component that are data segments (the initial contents of linear
/// memories, across every module), and so not code: an interpreter's snapshotted heap
/// (Python's, JavaScript's) is most of its component. An upload's `max_plugin_bytes`
/// counts the rest; data is bounded by the memory it must fit in. Bytes that do not
/// parse count as code.
pub fn data_bytes(wasm: &[u8]) -> usize {
    let mut data = 0;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::DataSection(reader)) => data += reader.range().len(),
            Ok(_) => {}
            Err(_) => return 0,
        }
    }
    data
}

/// Refuses a component whose shape breaks the limits above or the pool's per-component
/// limits; says which limit, with the numbers.
pub fn check(wasm: &[u8]) -> Result<(), InvalidPlugin> {
    let refuse = |what: String| Err(InvalidPlugin(what));
    let (mut functions, mut instantiations, mut memories, mut tables) = (0usize, 0u32, 0u32, 0u32);
    for payload in Parser::new(0).parse_all(wasm) {
        let payload =
            payload.map_err(|e| InvalidPlugin(format!("the component does not parse: {e}")))?;
        match payload {
            Payload::CodeSectionEntry(body) => {
                functions += 1;
                let size = body.range().len();
                if size > MAX_FUNCTION_BYTES {
                    return refuse(format!(
                        "function {functions} is {size} bytes; at most {MAX_FUNCTION_BYTES} are \
                         allowed (split it: large functions take minutes to compile)"
                    ));
                }
                let mut locals = 0u64;
                let reader = body
                    .get_locals_reader()
                    .map_err(|e| InvalidPlugin(format!("the component does not parse: {e}")))?;
                for local in reader {
                    let (count, _) = local
                        .map_err(|e| InvalidPlugin(format!("the component does not parse: {e}")))?;
                    locals += u64::from(count);
                }
                if locals > MAX_LOCALS {
                    return refuse(format!(
                        "function {functions} declares {locals} locals; at most {MAX_LOCALS} \
                         are allowed"
                    ));
                }
            }
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    let instance = instance
                        .map_err(|e| InvalidPlugin(format!("the component does not parse: {e}")))?;
                    if matches!(instance, Instance::Instantiate { .. }) {
                        instantiations += 1;
                    }
                }
            }
            Payload::MemorySection(reader) => memories += reader.count(),
            Payload::TableSection(reader) => tables += reader.count(),
            _ => {}
        }
    }
    if functions > MAX_FUNCTIONS {
        return refuse(format!(
            "the component has {functions} functions; at most {MAX_FUNCTIONS} are allowed"
        ));
    }
    if instantiations > MAX_CORE_INSTANCES_PER_COMPONENT {
        return refuse(format!(
            "the component instantiates {instantiations} core modules; at most \
             {MAX_CORE_INSTANCES_PER_COMPONENT} are allowed"
        ));
    }
    if memories > MAX_MEMORIES_PER_COMPONENT {
        return refuse(format!(
            "the component defines {memories} linear memories; at most \
             {MAX_MEMORIES_PER_COMPONENT} are allowed"
        ));
    }
    if tables > MAX_TABLES_PER_COMPONENT {
        return refuse(format!(
            "the component defines {tables} tables; at most {MAX_TABLES_PER_COMPONENT} are \
             allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leb(n: usize, out: &mut Vec<u8>) {
        wasm_variant::wasm_encoder::Encode::encode(&n, out);
    }

    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len(), out);
        out.extend_from_slice(body);
    }

    /// A core module with `memories` memories and one function whose body is `body`.
    fn module(memories: usize, body: &[u8]) -> Vec<u8> {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        section(1, &[1, 0x60, 0, 0], &mut wasm); // one type: [] -> []
        section(3, &[1, 0], &mut wasm); // one function of type 0
        let mut mems = Vec::new();
        leb(memories, &mut mems);
        for _ in 0..memories {
            mems.extend_from_slice(&[0, 1]);
        }
        section(5, &mems, &mut wasm);
        let mut code = vec![1];
        leb(body.len(), &mut code);
        code.extend_from_slice(body);
        section(10, &code, &mut wasm);
        wasm
    }

    #[test]
    fn data_segments_are_counted_apart_from_code() {
        let mut wasm = module(1, &[0, 0x0b]);
        assert_eq!(data_bytes(&wasm), 0);
        // One active data segment: memory 0, offset i32.const 0, 1,000 bytes.
        let mut data = vec![1, 0, 0x41, 0, 0x0b];
        leb(1000, &mut data);
        data.extend(std::iter::repeat_n(7u8, 1000));
        section(11, &data, &mut wasm);
        assert!(check(&wasm).is_ok());
        assert_eq!(data_bytes(&wasm), data.len());
        assert_eq!(data_bytes(b"\0asm\x0d\0\x01\0garbage"), 0);
    }

    #[test]
    fn an_ordinary_module_passes() {
        assert!(check(&module(1, &[0, 0x0b])).is_ok());
    }

    #[test]
    fn too_many_memories_are_refused_before_compiling() {
        let error = check(&module(5, &[0, 0x0b])).unwrap_err();
        assert!(error.0.contains("5 linear memories"), "{}", error.0);
    }

    #[test]
    fn too_many_tables_are_refused_before_compiling() {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        let mut tables = Vec::new();
        leb(13, &mut tables);
        for _ in 0..13 {
            tables.extend_from_slice(&[0x70, 0, 0]); // funcref, at least 0 elements
        }
        section(4, &tables, &mut wasm);
        let error = check(&wasm).unwrap_err();
        assert!(error.0.contains("13 tables"), "{}", error.0);
    }

    #[test]
    fn huge_functions_and_locals_are_refused_before_compiling() {
        let mut body = vec![0];
        body.extend(std::iter::repeat_n(0x01, MAX_FUNCTION_BYTES)); // nop × 2 MiB
        body.push(0x0b);
        let error = check(&module(1, &body)).unwrap_err();
        assert!(error.0.contains("at most 2097152"), "{}", error.0);

        let mut body = vec![1];
        leb(60_000, &mut body);
        body.extend_from_slice(&[0x7f, 0x0b]); // 60,000 i32 locals, then end
        let error = check(&module(1, &body)).unwrap_err();
        assert!(error.0.contains("60000 locals"), "{}", error.0);
    }
}
