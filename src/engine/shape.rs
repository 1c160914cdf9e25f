//! The shapes callers read back (a call's result, a report, a node's
//! address) are declared once, each group inside a macro of its module
//! (`lock::call_shapes!`, `lock::report_shapes!`, `node::node_shapes!`)
//! that hands the declarations to an expander. `plain!` makes them the
//! engine's own structs and enums; a binding expands the same declarations
//! again into its own mirror of each, so a field added to a shape reaches
//! every caller from that one place.
//!
//! A group starts with `in <module path>;`, where the engine's types live,
//! and holds structs of named public fields and enums of unit variants,
//! with their attributes and documentation, which a mirror keeps. A field
//! names another shape of its group by its plain name, which each expansion
//! resolves to its own copy. A field whose attributes start with
//! `#[doc(hidden)]` is the engine's alone: no mirror has it. The documentation is written `#[doc = "..."]`:
//! a `///` comment inside a macro reaches an attribute macro as a raw
//! string literal, which the binding's type generator would print with its
//! `r"` prefix.

/// Declares a group's shapes as written.
macro_rules! plain {
  (in $($path:ident)::+; $($items:tt)*) => {
    $($items)*
  };
}

pub(crate) use plain;
