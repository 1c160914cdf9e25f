//! The JavaScript types of everything a call gives back. The engine's shapes
//! (see `engine::shape`) are expanded here a second time, as
//! `#[napi(object)]` structs and string enums that napi-rs generates into
//! `binding.d.ts`, each with a conversion from the engine's own type; a
//! `Decision` tells a caller that asks what decided its acquire, extend or
//! release.
//!
//! Reports read `null` for what they do not know, as `index.d.ts` promises;
//! a resolved node leaves out what it does not have.

use std::collections::BTreeMap;

use napi_derive::napi;

use crate::engine::error::error_shapes;
use crate::engine::lock::{call_shapes, report_shapes};
use crate::engine::node::node_shapes;
use crate::engine::observe::observe_shapes;

/// Moves an engine value into its JavaScript mirror.
pub trait Mirror<T> {
  fn mirror(self) -> T;
}

/// Types that cross as they are.
macro_rules! as_they_are {
  ($($ty:ty),*) => {
    $(impl Mirror<$ty> for $ty {
      fn mirror(self) -> $ty {
        self
      }
    })*
  };
}

as_they_are!(String, bool, f64, u16, u32, i64, u64, BTreeMap<String, String>);

impl<A: Mirror<B>, B> Mirror<Option<B>> for Option<A> {
  fn mirror(self) -> Option<B> {
    self.map(Mirror::mirror)
  }
}

impl<A: Mirror<B>, B> Mirror<Vec<B>> for Vec<A> {
  fn mirror(self) -> Vec<B> {
    self.into_iter().map(Mirror::mirror).collect()
  }
}

/// Expands a group of engine shapes into mirrors made with the `#[napi]`
/// arguments in brackets (structs), enums always as lowercase strings. They
/// only ever go to JavaScript. A struct's fields are taken one by one so
/// that an `Option` reaches napi-rs as a path it recognizes (a type passed
/// through a macro whole does not), which decides that an absent value is
/// left out rather than set; a field marked `#[doc(hidden)]` is left out.
macro_rules! mirror {
  ([$($napi:tt)*] in $($path:ident)::+;) => {};
  (
    [$($napi:tt)*] in $($path:ident)::+;
    $(#[$attr:meta])*
    pub struct $name:ident { $($fields:tt)* }
    $($rest:tt)*
  ) => {
    mirror! { @fields [$($napi)*] [$($path)::+] [$(#[$attr])*] $name [] [] $($fields)* }
    mirror! { [$($napi)*] in $($path)::+; $($rest)* }
  };
  (
    [$($napi:tt)*] in $($path:ident)::+;
    $(#[$attr:meta])*
    pub enum $name:ident {
      $($(#[$variant_attr:meta])* $variant:ident),* $(,)?
    }
    $($rest:tt)*
  ) => {
    #[napi(string_enum = "lowercase")]
    $(#[$attr])*
    pub enum $name {
      $($(#[$variant_attr])* $variant),*
    }

    impl Mirror<$name> for $($path)::+::$name {
      fn mirror(self) -> $name {
        use $($path)::+::$name as Engine;
        match self {
          $(Engine::$variant => $name::$variant),*
        }
      }
    }

    mirror! { [$($napi)*] in $($path)::+; $($rest)* }
  };
  (
    @fields [$($napi:tt)*] [$($path:tt)*] [$($attr:tt)*] $name:ident
    [$($done:tt)*] [$($field:ident)*]
  ) => {
    #[napi($($napi)*)]
    $($attr)*
    pub struct $name {
      $($done)*
    }

    impl Mirror<$name> for $($path)*::$name {
      fn mirror(self) -> $name {
        $name {
          $($field: Mirror::mirror(self.$field)),*
        }
      }
    }
  };
  (
    @fields [$($napi:tt)*] [$($path:tt)*] [$($attr:tt)*] $name:ident
    [$($done:tt)*] [$($field:ident)*]
    #[doc(hidden)] $(#[$next_attr:meta])* pub $next:ident: $ty:ty $(, $($more:tt)*)?
  ) => {
    mirror! {
      @fields [$($napi)*] [$($path)*] [$($attr)*] $name
      [$($done)*] [$($field)*]
      $($($more)*)?
    }
  };
  (
    @fields [$($napi:tt)*] [$($path:tt)*] [$($attr:tt)*] $name:ident
    [$($done:tt)*] [$($field:ident)*]
    $(#[$next_attr:meta])* pub $next:ident: Option<$ty:ty> $(, $($more:tt)*)?
  ) => {
    mirror! {
      @fields [$($napi)*] [$($path)*] [$($attr)*] $name
      [$($done)* $(#[$next_attr])* pub $next: Option<$ty>,] [$($field)* $next]
      $($($more)*)?
    }
  };
  (
    @fields [$($napi:tt)*] [$($path:tt)*] [$($attr:tt)*] $name:ident
    [$($done:tt)*] [$($field:ident)*]
    $(#[$next_attr:meta])* pub $next:ident: $ty:ty $(, $($more:tt)*)?
  ) => {
    mirror! {
      @fields [$($napi)*] [$($path)*] [$($attr)*] $name
      [$($done)* $(#[$next_attr])* pub $next: $ty,] [$($field)* $next]
      $($($more)*)?
    }
  };
}

/// Mirrors whose absent values read `null`.
macro_rules! nullable {
  ($($shapes:tt)*) => {
    mirror! { [object, object_from_js = false, use_nullable = true] $($shapes)* }
  };
}

/// Mirrors whose absent values are left out.
macro_rules! optional {
  ($($shapes:tt)*) => {
    mirror! { [object, object_from_js = false] $($shapes)* }
  };
}

call_shapes!(nullable);
report_shapes!(nullable);
error_shapes!(nullable);
observe_shapes!(nullable);
node_shapes!(optional);

/// What decided a call, for a caller that asks: the attempts it made and
/// each node's vote in the last one.
#[napi(object, object_from_js = false)]
pub struct Decision {
  pub attempts: u32,
  pub votes: Vec<NodeVote>,
}
