//! Canonical answer citations (provider-opaque, Anthropic-shaped) as OpenAI `url_citation`
//! annotations: which citations have that slot, and the character span each one covers.

use llm_proxy_api::model::Part;
use serde_json::Value;

/// A web citation with the span of answer text it backs (character offsets into the
/// message's text, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCitation {
    /// The cited page.
    pub url: String,
    /// Its title (empty when the provider gave none).
    pub title: String,
    /// First character of the cited text.
    pub start_index: usize,
    /// One past its last character.
    pub end_index: usize,
}

impl UrlCitation {
    /// Chat completions' shape: `{type, url_citation: {start_index, end_index, url, title}}`.
    pub fn chat_annotation(&self) -> Value {
        serde_json::json!({"type": "url_citation", "url_citation": {
            "start_index": self.start_index, "end_index": self.end_index,
            "url": self.url, "title": self.title,
        }})
    }

    /// Responses' shape: `{type, start_index, end_index, url, title}`.
    pub fn responses_annotation(&self) -> Value {
        serde_json::json!({"type": "url_citation", "start_index": self.start_index,
            "end_index": self.end_index, "url": self.url, "title": self.title})
    }
}

/// The url and title of a citation OpenAI can show (a web search result, e.g. Anthropic
/// `web_search_result_location`); `None` for document locations, which have no slot there.
pub fn url_and_title(citation: &Value) -> Option<(&str, &str)> {
    let url = citation.get("url").and_then(Value::as_str)?;
    let title = citation.get("title").and_then(Value::as_str).unwrap_or("");
    Some((url, title))
}

/// Whether some citation in `parts` has no OpenAI slot.
pub fn any_without_url(parts: &[Part]) -> bool {
    parts.iter().any(|p| match p {
        Part::Text(t) => t.citations.iter().any(|c| url_and_title(c).is_none()),
        _ => false,
    })
}

/// The url citations of a whole answer's text parts, with spans over their concatenated text.
pub fn url_citations(parts: &[Part]) -> Vec<UrlCitation> {
    let mut spans = CitationSpans::default();
    let mut out = Vec::new();
    for part in parts {
        if let Part::Text(t) = part {
            for c in &t.citations {
                out.extend(spans.citation(c));
            }
            spans.text(&t.text);
        }
    }
    out.extend(spans.flush());
    out
}

/// Tracks citations of a streamed answer until the span they back is known: a group of
/// citations backs the text that follows it, up to the next group (or the end of the text).
#[derive(Debug, Default)]
pub struct CitationSpans {
    pending: Vec<(String, String)>,
    start: usize,
    chars: usize,
    has_text: bool,
}

impl CitationSpans {
    /// A citation; returns the previous group when this one starts a new one.
    pub fn citation(&mut self, citation: &Value) -> Vec<UrlCitation> {
        let done = if self.has_text {
            self.flush()
        } else {
            Vec::new()
        };
        if let Some((url, title)) = url_and_title(citation) {
            if self.pending.is_empty() {
                self.start = self.chars;
            }
            self.pending.push((url.to_owned(), title.to_owned()));
        }
        done
    }

    /// Text written to the client.
    pub fn text(&mut self, text: &str) {
        self.chars += text.chars().count();
        self.has_text = !self.pending.is_empty();
    }

    /// The pending group, now that its text is complete.
    pub fn flush(&mut self) -> Vec<UrlCitation> {
        self.has_text = false;
        let (start, end) = (self.start, self.chars);
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(url, title)| UrlCitation {
                url,
                title,
                start_index: start,
                end_index: end,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::model::TextPart;
    use serde_json::json;

    fn cited(text: &str, citations: Vec<Value>) -> Part {
        let mut t = TextPart::new(text);
        t.citations = citations;
        Part::Text(t)
    }

    #[test]
    fn web_citations_span_the_text_they_lead() {
        let web = json!({"type": "web_search_result_location", "url": "https://a.example",
            "title": "A", "encrypted_index": "x", "cited_text": "sky"});
        let doc = json!({"type": "char_location", "cited_text": "grass", "document_index": 0});
        let parts = vec![
            cited("Intro. ", vec![]),
            cited("The sky is blue.", vec![web]),
            cited(" Grass.", vec![doc]),
        ];
        assert_eq!(
            url_citations(&parts),
            vec![UrlCitation {
                url: "https://a.example".into(),
                title: "A".into(),
                start_index: 7,
                end_index: 23,
            }]
        );
        assert!(any_without_url(&parts));
        assert!(!any_without_url(&parts[..2]));
        assert_eq!(
            url_citations(&parts)[0].responses_annotation(),
            json!({"type": "url_citation", "start_index": 7, "end_index": 23,
                "url": "https://a.example", "title": "A"})
        );
    }
}
