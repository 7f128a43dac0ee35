//! Limits are declared once and come out as two types: the full set a tier holds (every value
//! known: a threshold or `None` for "not limited", a setting with its default) and the partial
//! set a tenant entry holds (every value optional, `None` = "as the tier says"), with the merge
//! of one over the other. Adding a limit is one line in `limits.rs`; the schema (field names,
//! strictness, defaults) stays exactly what serde shows for the generated structs.

/// Whether a field is left out when serialized: an absent threshold is, and so is a mode or set
/// at its default (the policy document stays as the operator wrote it); other settings never are.
pub(crate) trait Unset {
    fn is_unset(&self) -> bool;
}

impl<T> Unset for Option<T> {
    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

macro_rules! always_set {
    ($($t:ty),*) => { $(impl Unset for $t { fn is_unset(&self) -> bool { false } })* };
}
always_set!(u32, u64, f64, bool);

/// `overridable! { full struct {extra fields} override struct {extra fields} overridable { ... } }`
///
/// Each overridable field is `name: T` (a threshold: `Option<T>` in the full set, absent = no
/// limit) or `name: T = default` (a setting: `T` in the full set). Extra fields are written as
/// given; those of the full set must implement `Default`.
macro_rules! overridable {
    (
        $(#[$full_meta:meta])*
        pub struct $full:ident {
            $( $(#[$fx_meta:meta])* pub $fx_name:ident : $fx_ty:ty, )*
        }
        $(#[$over_meta:meta])*
        pub struct $over:ident {
            $( $(#[$ox_meta:meta])* pub $ox_name:ident : $ox_ty:ty, )*
        }
        overridable {
            $( $(#[doc = $doc:literal])* $name:ident : $ty:ty $(= $default:expr)?, )*
        }
    ) => {
        $(#[$full_meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $full {
            $(
                $(#[doc = $doc])*
                #[serde(skip_serializing_if = "crate::policy::overridable::Unset::is_unset")]
                pub $name: overridable!(@full $ty $(, $default)?),
            )*
            $( $(#[$fx_meta])* pub $fx_name: $fx_ty, )*
        }

        impl Default for $full {
            fn default() -> Self {
                Self {
                    $( $name: overridable!(@default $($default)?), )*
                    $( $fx_name: Default::default(), )*
                }
            }
        }

        $(#[$over_meta])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $over {
            $( $(#[$ox_meta])* pub $ox_name: $ox_ty, )*
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        impl $over {
            /// Replaces in `base` every value this override sets.
            pub(crate) fn override_fields(&self, base: &mut $full) {
                $( if let Some(v) = &self.$name { base.$name = overridable!(@set v $(, $default)?); } )*
            }
        }
    };
    (@full $ty:ty) => { Option<$ty> };
    (@full $ty:ty, $default:expr) => { $ty };
    (@default) => { None };
    (@default $default:expr) => { $default };
    // By reference, so a setting need not be `Copy` (the model limits are a map).
    (@set $v:ident) => { Some(Clone::clone($v)) };
    (@set $v:ident, $default:expr) => { Clone::clone($v) };
}

pub(crate) use overridable;
