//! Per-language knowledge for the tree-sitter strategy: which grammar parses a
//! language, which syntax nodes are items worth a chunk of their own, what the
//! item's symbol-path segment and bare name are, and which child holds the
//! members of a container.
//!
//! It is not for walking the tree or cutting text: `syntax.rs` does that and
//! only asks this module "is this node an item, and what is it?".

use tree_sitter::Node;

use crate::chunk::{ChunkKind, Language};

/// An item recognised among a scope's members.
pub(crate) struct Item<'t> {
    pub kind: ChunkKind,
    /// Symbol-path segment, e.g. "fn poll", "impl Iterator for Lines", "class Session".
    pub segment: String,
    /// Bare name, e.g. "poll", "Lines", "Session"; empty when anonymous.
    pub name: String,
    /// For containers: the node whose children are the members.
    pub body: Option<Node<'t>>,
    /// Whether functions among the members are methods.
    pub holds_methods: bool,
}

/// The tree-sitter grammar for a language; `None` for markdown and plain text.
pub(crate) fn grammar(language: Language) -> Option<tree_sitter::Language> {
    Some(match language {
        Language::Rust => tree_sitter_rust::LANGUAGE.into(),
        Language::Python => tree_sitter_python::LANGUAGE.into(),
        Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
        Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
        Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
        Language::Go => tree_sitter_go::LANGUAGE.into(),
        Language::Java => tree_sitter_java::LANGUAGE.into(),
        Language::C => tree_sitter_c::LANGUAGE.into(),
        Language::Cpp => tree_sitter_cpp::LANGUAGE.into(),
        Language::Markdown | Language::Text => return None,
    })
}

/// Comments and attributes directly above an item belong to the item.
pub(crate) fn is_attachable(node: Node) -> bool {
    let kind = node.kind();
    kind.ends_with("comment") || kind == "attribute_item"
}

/// Whether a node following an item on the item's last line belongs to it
/// (a trailing comment, or the `;` after a C struct).
pub(crate) fn is_trailer(node: Node) -> bool {
    let kind = node.kind();
    kind.ends_with("comment") || kind == ";"
}

/// Nodes whose children are spliced into the enclosing member list, so that
/// items under `#ifdef` guards or in a Java enum's body declarations are found.
pub(crate) fn is_transparent(language: Language, node: Node) -> bool {
    match language {
        Language::C | Language::Cpp => matches!(
            node.kind(),
            "preproc_if" | "preproc_ifdef" | "preproc_else" | "preproc_elif" | "preproc_elifdef"
        ),
        Language::Java => node.kind() == "enum_body_declarations",
        _ => false,
    }
}

/// Recognises `node` as an item. `in_type` says whether the enclosing scope is
/// a type (impl, trait, class, interface), which makes functions methods.
pub(crate) fn classify<'t>(
    language: Language,
    node: Node<'t>,
    src: &str,
    in_type: bool,
) -> Option<Item<'t>> {
    match language {
        Language::Rust => rust(node, src, in_type),
        Language::Python => python(node, src, in_type, 0),
        Language::JavaScript | Language::TypeScript | Language::Tsx => ecmascript(node, src, 0),
        Language::Go => go(node, src),
        Language::Java => java(node, src),
        Language::C | Language::Cpp => c_family(node, src, in_type, 0),
        Language::Markdown | Language::Text => None,
    }
}

/// Wrapper nesting (export of a declare of a namespace, template of a template...)
/// is followed at most this deep.
const MAX_WRAPPING: usize = 4;

fn item<'t>(kind: ChunkKind, keyword: &str, name: String) -> Item<'t> {
    let segment = if name.is_empty() {
        keyword.to_string()
    } else {
        format!("{keyword} {name}")
    };
    Item {
        kind,
        segment,
        name,
        body: None,
        holds_methods: false,
    }
}

fn container<'t>(mut it: Item<'t>, body: Option<Node<'t>>, holds_methods: bool) -> Item<'t> {
    it.body = body;
    it.holds_methods = holds_methods;
    it
}

fn function_kind(in_type: bool) -> ChunkKind {
    if in_type {
        ChunkKind::Method
    } else {
        ChunkKind::Function
    }
}

/// Node text with whitespace runs collapsed to one space, capped in length so
/// that a pathological header cannot produce a giant symbol.
pub(crate) fn collapsed(node: Node, src: &str) -> String {
    const MAX_CHARS: usize = 120;
    let raw = src.get(node.byte_range()).unwrap_or("");
    let mut out = String::new();
    for (i, word) in raw.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > MAX_CHARS {
            let mut cut = MAX_CHARS;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

fn named_children(node: Node) -> Vec<Node> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor).collect()
}

fn field_text(node: Node, field: &str, src: &str) -> String {
    node.child_by_field_name(field)
        .map(|n| collapsed(n, src))
        .unwrap_or_default()
}

fn name_of(node: Node, src: &str) -> String {
    field_text(node, "name", src)
}

// ---------------------------------------------------------------- Rust

fn rust<'t>(node: Node<'t>, src: &str, in_type: bool) -> Option<Item<'t>> {
    let body = node.child_by_field_name("body");
    Some(match node.kind() {
        "function_item" | "function_signature_item" => {
            item(function_kind(in_type), "fn", name_of(node, src))
        }
        "struct_item" => item(ChunkKind::Struct, "struct", name_of(node, src)),
        "union_item" => item(ChunkKind::Struct, "union", name_of(node, src)),
        "enum_item" => item(ChunkKind::Enum, "enum", name_of(node, src)),
        "type_item" => item(ChunkKind::Type, "type", name_of(node, src)),
        "const_item" => item(ChunkKind::Const, "const", name_of(node, src)),
        "static_item" => item(ChunkKind::Const, "static", name_of(node, src)),
        "macro_definition" => item(ChunkKind::Macro, "macro", name_of(node, src)),
        "trait_item" => container(
            item(ChunkKind::Trait, "trait", name_of(node, src)),
            body,
            true,
        ),
        "mod_item" => container(
            item(ChunkKind::Module, "mod", name_of(node, src)),
            body,
            false,
        ),
        "foreign_mod_item" => {
            let abi = named_children(node)
                .into_iter()
                .find(|c| c.kind() == "extern_modifier")
                .map(|c| collapsed(c, src))
                .unwrap_or_else(|| "extern".to_string());
            let mut it = item(ChunkKind::Module, &abi, String::new());
            it.segment = abi;
            container(it, body, false)
        }
        "impl_item" => {
            let ty = node.child_by_field_name("type");
            let ty_text = ty.map(|t| collapsed(t, src)).unwrap_or_default();
            let segment = match node.child_by_field_name("trait") {
                Some(tr) => format!("impl {} for {}", collapsed(tr, src), ty_text),
                None => format!("impl {ty_text}"),
            };
            let name = ty.map(|t| rust_bare_type(t, src)).unwrap_or_default();
            Item {
                kind: ChunkKind::Impl,
                segment,
                name,
                body,
                holds_methods: true,
            }
        }
        _ => return None,
    })
}

/// `Foo` for `Foo<T>`, `&'a mut Foo`, `crate::x::Foo`.
fn rust_bare_type(mut ty: Node, src: &str) -> String {
    for _ in 0..8 {
        let inner = match ty.kind() {
            "generic_type" | "reference_type" | "pointer_type" => ty.child_by_field_name("type"),
            "scoped_type_identifier" => ty.child_by_field_name("name"),
            _ => None,
        };
        match inner {
            Some(next) => ty = next,
            None => break,
        }
    }
    collapsed(ty, src)
}

// ---------------------------------------------------------------- Python

fn python<'t>(node: Node<'t>, src: &str, in_type: bool, depth: usize) -> Option<Item<'t>> {
    match node.kind() {
        "function_definition" => Some(item(function_kind(in_type), "def", name_of(node, src))),
        "class_definition" => Some(container(
            item(ChunkKind::Class, "class", name_of(node, src)),
            node.child_by_field_name("body"),
            true,
        )),
        "decorated_definition" if depth < MAX_WRAPPING => python(
            node.child_by_field_name("definition")?,
            src,
            in_type,
            depth + 1,
        ),
        _ => None,
    }
}

// ---------------------------------------------------------------- JavaScript, TypeScript, TSX

fn ecmascript<'t>(node: Node<'t>, src: &str, depth: usize) -> Option<Item<'t>> {
    let body = node.child_by_field_name("body");
    Some(match node.kind() {
        "function_declaration" | "generator_function_declaration" | "function_signature" => {
            item(ChunkKind::Function, "function", name_of(node, src))
        }
        "class_declaration" | "abstract_class_declaration" | "class" => container(
            item(ChunkKind::Class, "class", name_of(node, src)),
            body,
            true,
        ),
        "method_definition" | "method_signature" | "abstract_method_signature" => {
            item(ChunkKind::Method, "method", name_of(node, src))
        }
        "field_definition" | "public_field_definition" => {
            let value = node.child_by_field_name("value")?;
            if !is_function_value(value) {
                return None;
            }
            let name = node
                .child_by_field_name("property")
                .or_else(|| node.child_by_field_name("name"))
                .map(|n| collapsed(n, src))
                .unwrap_or_default();
            item(ChunkKind::Method, "method", name)
        }
        "interface_declaration" => container(
            item(ChunkKind::Interface, "interface", name_of(node, src)),
            body,
            true,
        ),
        "type_alias_declaration" => item(ChunkKind::Type, "type", name_of(node, src)),
        "enum_declaration" => item(ChunkKind::Enum, "enum", name_of(node, src)),
        "internal_module" => container(
            item(ChunkKind::Module, "namespace", name_of(node, src)),
            body,
            false,
        ),
        "module" => container(
            item(ChunkKind::Module, "module", name_of(node, src)),
            body,
            false,
        ),
        "lexical_declaration" | "variable_declaration" => {
            // `const f = () => ...`, `let g = function () {...}`, `const C = class {...}`.
            let declarator = named_children(node)
                .into_iter()
                .find(|c| c.kind() == "variable_declarator")?;
            let value = declarator.child_by_field_name("value")?;
            let name = field_text(declarator, "name", src);
            if value.kind() == "class" {
                container(
                    item(ChunkKind::Class, "class", name),
                    value.child_by_field_name("body"),
                    true,
                )
            } else if is_function_value(value) {
                item(ChunkKind::Function, "function", name)
            } else {
                return None;
            }
        }
        "export_statement" if depth < MAX_WRAPPING => {
            if let Some(decl) = node.child_by_field_name("declaration") {
                return ecmascript(decl, src, depth + 1);
            }
            // `export default function () {}` / `export default () => ...`.
            let value = node.child_by_field_name("value")?;
            if value.kind() == "class" {
                let name = name_of(value, src);
                let name = if name.is_empty() {
                    "default".to_string()
                } else {
                    name
                };
                container(
                    item(ChunkKind::Class, "class", name),
                    value.child_by_field_name("body"),
                    true,
                )
            } else if is_function_value(value) {
                let name = name_of(value, src);
                item(
                    ChunkKind::Function,
                    "function",
                    if name.is_empty() {
                        "default".to_string()
                    } else {
                        name
                    },
                )
            } else {
                return None;
            }
        }
        "ambient_declaration" | "expression_statement" if depth < MAX_WRAPPING => {
            // `declare ...` and the statement wrapper around `namespace N {}`.
            let inner = node.named_child(0)?;
            return ecmascript(inner, src, depth + 1);
        }
        _ => return None,
    })
}

fn is_function_value(value: Node) -> bool {
    matches!(
        value.kind(),
        "arrow_function" | "function_expression" | "function" | "generator_function"
    )
}

// ---------------------------------------------------------------- Go

fn go<'t>(node: Node<'t>, src: &str) -> Option<Item<'t>> {
    Some(match node.kind() {
        "function_declaration" => item(ChunkKind::Function, "func", name_of(node, src)),
        "method_declaration" => {
            let name = name_of(node, src);
            let receiver = node
                .child_by_field_name("receiver")
                .and_then(|list| {
                    named_children(list)
                        .into_iter()
                        .find(|c| c.kind() == "parameter_declaration")
                })
                .and_then(|p| p.child_by_field_name("type"))
                .map(|t| collapsed(t, src))
                .unwrap_or_default();
            let segment = format!("func ({receiver}) {name}");
            Item {
                kind: ChunkKind::Method,
                segment,
                name,
                body: None,
                holds_methods: false,
            }
        }
        "type_declaration" => {
            let specs: Vec<Node> = named_children(node)
                .into_iter()
                .filter(|c| c.kind() == "type_spec" || c.kind() == "type_alias")
                .collect();
            let first = specs.first()?;
            let kind = match (
                specs.len(),
                first.child_by_field_name("type").map(|t| t.kind()),
            ) {
                (1, Some("struct_type")) => ChunkKind::Struct,
                (1, Some("interface_type")) => ChunkKind::Interface,
                _ => ChunkKind::Type,
            };
            item(kind, "type", name_of(*first, src))
        }
        "const_declaration" | "var_declaration" => {
            let keyword = if node.kind() == "const_declaration" {
                "const"
            } else {
                "var"
            };
            let name = named_children(node)
                .into_iter()
                .find_map(|spec| spec.child_by_field_name("name"))
                .map(|n| collapsed(n, src))
                .unwrap_or_default();
            item(ChunkKind::Const, keyword, name)
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------- Java

fn java<'t>(node: Node<'t>, src: &str) -> Option<Item<'t>> {
    let body = node.child_by_field_name("body");
    Some(match node.kind() {
        "class_declaration" => container(
            item(ChunkKind::Class, "class", name_of(node, src)),
            body,
            true,
        ),
        "record_declaration" => container(
            item(ChunkKind::Class, "record", name_of(node, src)),
            body,
            true,
        ),
        "interface_declaration" => container(
            item(ChunkKind::Interface, "interface", name_of(node, src)),
            body,
            true,
        ),
        "annotation_type_declaration" => container(
            item(ChunkKind::Interface, "@interface", name_of(node, src)),
            body,
            true,
        ),
        "enum_declaration" => container(
            item(ChunkKind::Enum, "enum", name_of(node, src)),
            body,
            true,
        ),
        "method_declaration" => item(ChunkKind::Method, "method", name_of(node, src)),
        "constructor_declaration" | "compact_constructor_declaration" => {
            item(ChunkKind::Method, "constructor", name_of(node, src))
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------- C and C++

fn c_family<'t>(node: Node<'t>, src: &str, in_type: bool, depth: usize) -> Option<Item<'t>> {
    let body = node.child_by_field_name("body");
    Some(match node.kind() {
        "function_definition" => {
            let full = node
                .child_by_field_name("declarator")
                .and_then(declarator_name)
                .map(|n| collapsed(n, src))
                .unwrap_or_default();
            let bare = full.rsplit("::").next().unwrap_or("").to_string();
            let kind = function_kind(in_type || full.contains("::"));
            let segment = if full.is_empty() {
                "function".to_string()
            } else {
                format!("function {full}")
            };
            Item {
                kind,
                segment,
                name: bare,
                body: None,
                holds_methods: false,
            }
        }
        "struct_specifier" | "union_specifier" | "enum_specifier" | "class_specifier" => {
            body?;
            let (kind, keyword) = match node.kind() {
                "struct_specifier" => (ChunkKind::Struct, "struct"),
                "union_specifier" => (ChunkKind::Struct, "union"),
                "enum_specifier" => (ChunkKind::Enum, "enum"),
                _ => (ChunkKind::Class, "class"),
            };
            let holds_methods = kind != ChunkKind::Enum;
            container(item(kind, keyword, name_of(node, src)), body, holds_methods)
        }
        "type_definition" => {
            let name = field_text(node, "declarator", src);
            let defined = node.child_by_field_name("type");
            match defined
                .filter(|t| t.child_by_field_name("body").is_some())
                .map(|t| t.kind())
            {
                Some("struct_specifier") => item(ChunkKind::Struct, "struct", name),
                Some("union_specifier") => item(ChunkKind::Struct, "union", name),
                Some("enum_specifier") => item(ChunkKind::Enum, "enum", name),
                _ => item(ChunkKind::Type, "type", name),
            }
        }
        "declaration" if depth < MAX_WRAPPING => {
            // `struct S { ... } s;` — the type with a body is the item.
            let ty = node.child_by_field_name("type")?;
            ty.child_by_field_name("body")?;
            return c_family(ty, src, in_type, depth + 1);
        }
        "namespace_definition" => container(
            item(ChunkKind::Module, "namespace", name_of(node, src)),
            body,
            false,
        ),
        "linkage_specification" => {
            let abi = format!("extern {}", field_text(node, "value", src));
            let it = Item {
                kind: ChunkKind::Module,
                segment: abi,
                name: String::new(),
                body: None,
                holds_methods: false,
            };
            match body {
                Some(b) if b.kind() == "declaration_list" => container(it, Some(b), false),
                Some(b) if depth < MAX_WRAPPING => return c_family(b, src, in_type, depth + 1),
                _ => return None,
            }
        }
        "template_declaration" if depth < MAX_WRAPPING => {
            let inner = named_children(node).into_iter().rev().find(|c| {
                c.kind() != "template_parameter_list" && !c.kind().ends_with("comment")
            })?;
            return c_family(inner, src, in_type, depth + 1);
        }
        "preproc_function_def" | "preproc_def" => {
            item(ChunkKind::Macro, "macro", name_of(node, src))
        }
        _ => return None,
    })
}

/// The identifier inside a (possibly pointer/reference/parenthesised) function declarator.
fn declarator_name(mut node: Node) -> Option<Node> {
    for _ in 0..16 {
        match node.kind() {
            "identifier"
            | "field_identifier"
            | "qualified_identifier"
            | "destructor_name"
            | "operator_name"
            | "template_function"
            | "operator_cast" => return Some(node),
            _ => {
                node = node
                    .child_by_field_name("declarator")
                    .or_else(|| node.named_child(0))?;
            }
        }
    }
    None
}
