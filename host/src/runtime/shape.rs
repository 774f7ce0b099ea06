//! The shape of an uploaded component, read before anything is compiled: a component
//! the pool could never instantiate, or one whose functions would keep cranelift busy
//! for minutes, is refused at once instead of after the compile.

use std::collections::HashSet;

use wasmparser::{
    ComponentTypeRef, ElementItems, Encoding, Instance, Operator, Parser, Payload, TypeRef,
};

use super::{
    InvalidPlugin, MAX_CORE_INSTANCE_BYTES, MAX_CORE_INSTANCES_PER_COMPONENT,
    MAX_MEMORIES_PER_COMPONENT, MAX_MEMORY_BYTES, MAX_TABLE_ELEMENTS, MAX_TABLES_PER_COMPONENT,
};

/// What the host's linkers provide, by the start of an imported interface's name: WASI 0.2 (the
/// sandbox's own answers) and the contract's `cairn:plugin` interfaces. An import
/// outside these can never link; one inside may still fail at link (an interface of
/// WASI the host does not serve), after its compile.
const PROVIDED_IMPORTS: [&str; 2] = ["wasi:", "cairn:plugin/"];

/// Bytes of an instance's context (wasmtime's `VMContext`) per imported function and
/// per function whose reference escapes (exported, in an element segment, `ref.func`
/// in a global), and per defined global and table: the parts that grow with a module.
/// The pool refuses an instance whose context passes `MAX_CORE_INSTANCE_BYTES`; this
/// count is a lower bound of it (the fixed parts left out), so a module it refuses
/// would surely be refused at link, after its compile.
const IMPORTED_FUNCTION_BYTES: usize = 24;
const ESCAPED_FUNCTION_BYTES: usize = 32;
const GLOBAL_BYTES: usize = 16;
const TABLE_BYTES: usize = 16;

/// One core module's parts that the pool bounds, counted as it is read.
#[derive(Default)]
struct ModuleShape {
    imported_functions: usize,
    escaped: HashSet<u32>,
    globals: usize,
    tables: usize,
}

impl ModuleShape {
    fn instance_bytes(&self) -> usize {
        self.imported_functions * IMPORTED_FUNCTION_BYTES
            + self.escaped.len() * ESCAPED_FUNCTION_BYTES
            + self.globals * GLOBAL_BYTES
            + self.tables * TABLE_BYTES
    }

    /// Functions a constant expression takes a reference of.
    fn escape_in(&mut self, expr: &wasmparser::ConstExpr) -> Result<(), InvalidPlugin> {
        for op in expr.get_operators_reader() {
            if let Operator::RefFunc { function_index } = op.map_err(unparsable)? {
                self.escaped.insert(function_index);
            }
        }
        Ok(())
    }
}

fn unparsable(e: wasmparser::BinaryReaderError) -> InvalidPlugin {
    InvalidPlugin(format!("the component does not parse: {e}"))
}

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
    // The module being read, innermost last (`None`: a component), and how deep in
    // components the reader is (1: the upload itself).
    let mut nesting: Vec<Option<ModuleShape>> = Vec::new();
    let mut modules = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload =
            payload.map_err(|e| InvalidPlugin(format!("the component does not parse: {e}")))?;
        let depth = nesting.len();
        let mut module = nesting.last_mut().and_then(Option::as_mut);
        match payload {
            Payload::Version { encoding, .. } => nesting.push(match encoding {
                Encoding::Module => {
                    modules += 1;
                    Some(ModuleShape::default())
                }
                Encoding::Component => None,
            }),
            Payload::End(_) => {
                if let Some(Some(module)) = nesting.pop() {
                    let bytes = module.instance_bytes();
                    if bytes > MAX_CORE_INSTANCE_BYTES {
                        return refuse(format!(
                            "core module {modules} needs at least {bytes} bytes of instance \
                             state ({} imported functions, {} functions referenced as values, \
                             {} globals); at most {MAX_CORE_INSTANCE_BYTES} are allowed per \
                             instance",
                            module.imported_functions,
                            module.escaped.len(),
                            module.globals
                        ));
                    }
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(unparsable)?;
                    // Interfaces; a type import names a type, not something to link.
                    let interface = matches!(import.ty, ComponentTypeRef::Instance(_));
                    let name = import.name.name;
                    if interface && !PROVIDED_IMPORTS.iter().any(|p| name.starts_with(p)) {
                        return refuse(format!(
                            "the component imports `{name}`, which the host does not provide \
                             (only WASI and cairn:plugin interfaces)"
                        ));
                    }
                }
            }
            Payload::ImportSection(reader) => {
                if let Some(module) = module {
                    for import in reader.into_imports() {
                        if let TypeRef::Func(_) = import.map_err(unparsable)?.ty {
                            module.imported_functions += 1;
                        }
                    }
                }
            }
            Payload::ExportSection(reader) => {
                if let Some(module) = module {
                    for export in reader {
                        let export = export.map_err(unparsable)?;
                        if export.kind == wasmparser::ExternalKind::Func {
                            module.escaped.insert(export.index);
                        }
                    }
                }
            }
            Payload::ElementSection(reader) => {
                if let Some(module) = module {
                    for element in reader {
                        match element.map_err(unparsable)?.items {
                            ElementItems::Functions(indices) => {
                                for index in indices {
                                    module.escaped.insert(index.map_err(unparsable)?);
                                }
                            }
                            ElementItems::Expressions(_, exprs) => {
                                for expr in exprs {
                                    module.escape_in(&expr.map_err(unparsable)?)?;
                                }
                            }
                        }
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                if let Some(module) = module {
                    for global in reader {
                        module.globals += 1;
                        module.escape_in(&global.map_err(unparsable)?.init_expr)?;
                    }
                }
            }
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
            Payload::MemorySection(reader) => {
                memories += reader.count();
                for memory in reader {
                    let memory = memory.map_err(unparsable)?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let initial = memory.initial.saturating_mul(page);
                    if initial > MAX_MEMORY_BYTES as u64 {
                        return refuse(format!(
                            "a linear memory starts at {initial} bytes; at most \
                             {MAX_MEMORY_BYTES} are allowed"
                        ));
                    }
                }
            }
            Payload::TableSection(reader) => {
                tables += reader.count();
                for table in reader {
                    let initial = table.map_err(unparsable)?.ty.initial;
                    if initial > MAX_TABLE_ELEMENTS as u64 {
                        return refuse(format!(
                            "a table starts with {initial} elements; at most \
                             {MAX_TABLE_ELEMENTS} are allowed"
                        ));
                    }
                    if let Some(module) = module.as_deref_mut() {
                        module.tables += 1;
                    }
                }
            }
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
    fn what_the_pool_would_refuse_at_link_is_refused_before_compiling() {
        // A table starting with 30,000 elements.
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        let mut table = vec![1, 0x70, 0];
        leb(30_000, &mut table);
        section(4, &table, &mut wasm);
        let error = check(&wasm).unwrap_err();
        assert!(error.0.contains("30000 elements"), "{}", error.0);

        // A memory starting one page past 1 GiB.
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        let mut memory = vec![1, 0];
        leb(16_385, &mut memory);
        section(5, &memory, &mut wasm);
        let error = check(&wasm).unwrap_err();
        assert!(
            error.0.contains("starts at 1073807360 bytes"),
            "{}",
            error.0
        );

        // 40,000 exported functions: 1.28 MB of instance state.
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        section(1, &[1, 0x60, 0, 0], &mut wasm);
        let mut functions = Vec::new();
        leb(40_000, &mut functions);
        functions.extend(std::iter::repeat_n(0u8, 40_000));
        section(3, &functions, &mut wasm);
        let mut exports = Vec::new();
        leb(40_000, &mut exports);
        for index in 0..40_000 {
            let name = format!("f{index}");
            leb(name.len(), &mut exports);
            exports.extend_from_slice(name.as_bytes());
            exports.push(0); // a function
            leb(index, &mut exports);
        }
        section(7, &exports, &mut wasm);
        let mut code = Vec::new();
        leb(40_000, &mut code);
        for _ in 0..40_000 {
            code.extend_from_slice(&[2, 0, 0x0b]);
        }
        section(10, &code, &mut wasm);
        let error = check(&wasm).unwrap_err();
        assert!(
            error.0.contains("40000 functions referenced as values"),
            "{}",
            error.0
        );
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
