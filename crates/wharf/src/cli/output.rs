//! Printing results: text for people, one JSON document for scripts.

use serde::Serialize;

use super::Format;

/// Prints `value` as JSON, or `text` for people.
pub fn emit<T: Serialize>(format: Format, value: &T, text: impl FnOnce() -> String) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).expect("results serialise")
        ),
        Format::Text => {
            let t = text();
            if !t.is_empty() {
                println!("{t}");
            }
        }
    }
}
