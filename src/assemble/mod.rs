//! One assembled answer from a stream, whatever the API: the object the
//! same request without `stream` would have returned, built from the
//! events as they arrive, and a typed delta for each piece that a live
//! caller may want to show (content, reasoning, refusal, tool-call
//! arguments).
//!
//! Each event's JSON is parsed once, by the stream reader; the assemblers
//! here only walk the parsed value. The rules for what real gateways send
//! (tool-call fragments without `index`, repeated names, usage on every
//! chunk, `choices: []`, ...) are in [`chat`] and listed in the README.

pub mod chat;
pub mod chunk;
pub mod merge;
pub mod messages;
pub mod responses;

use serde_json::Value;

/// The three streaming APIs llmpool assembles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /chat/completions`.
    Chat,
    /// OpenAI's Responses API, `POST /responses`.
    Responses,
    /// Anthropic's Messages API, `POST /messages`.
    Messages,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/chat/completions",
            Api::Responses => "/responses",
            Api::Messages => "/messages",
        }
    }
}

/// What a delta carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub enum DeltaKind {
    Content = 0,
    Reasoning = 1,
    Refusal = 2,
    ToolCall = 3,
}

/// One piece of a stream, as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta<'a> {
    pub kind: DeltaKind,
    /// The choice (chat `n > 1`); 0 for the other APIs.
    pub choice: u32,
    /// For a tool call: its position among the choice's calls (chat), its
    /// output item (Responses) or content block (Messages).
    pub call_index: u32,
    /// A tool call's id and name, once known.
    pub id: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The text, or a tool call's argument fragment.
    pub text: &'a str,
}

/// What one event meant for the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// More to come.
    More,
    /// The stream says it is complete.
    Done,
    /// The server reported an error inside the stream.
    Failed { message: String },
}

/// A tool call whose arguments are not valid JSON at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct BadArguments {
    /// Where it is in the completion, e.g. `choices[0].message.tool_calls[1]`.
    pub at: String,
    pub name: String,
    /// serde_json's reason, with the line and column where the JSON breaks.
    pub error: String,
}

/// The assembled answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assembled {
    /// The non-streaming shape of the answer.
    pub completion: Value,
    /// The text a caller reads (chat: choice 0's content).
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
    pub model: Option<String>,
    pub bad_arguments: Vec<BadArguments>,
}

/// An assembler for one stream.
pub enum Assembler {
    Chat(chat::Chat),
    Responses(responses::Responses),
    Messages(messages::Messages),
}

impl Assembler {
    pub fn new(api: Api) -> Assembler {
        match api {
            Api::Chat => Assembler::Chat(chat::Chat::default()),
            Api::Responses => Assembler::Responses(responses::Responses::default()),
            Api::Messages => Assembler::Messages(messages::Messages::default()),
        }
    }

    /// Feeds one event (`event` is its SSE `event:` name); `emit` gets each
    /// delta in it.
    pub fn feed(&mut self, event: Option<&str>, data: &Value, emit: &mut dyn FnMut(Delta)) -> Step {
        match self {
            Assembler::Chat(a) => a.feed(data, emit),
            Assembler::Responses(a) => a.feed(data, emit),
            Assembler::Messages(a) => a.feed(event, data, emit),
        }
    }

    /// Takes a whole answer where a stream was asked for (some gateways
    /// ignore `stream` and answer with the non-streaming object); `emit`
    /// gets its text as one content delta (chat: each piece as a delta).
    pub fn feed_whole(&mut self, v: &Value, emit: &mut dyn FnMut(Delta)) -> Step {
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Step::Failed {
                message: error_message(v),
            };
        }
        match self {
            Assembler::Chat(a) => {
                a.feed(v, emit);
                return Step::Done;
            }
            Assembler::Responses(a) => a.whole(v),
            Assembler::Messages(a) => a.whole(v),
        }
        let whole = self.finish().text;
        if !whole.is_empty() {
            emit(Delta {
                kind: DeltaKind::Content,
                choice: 0,
                call_index: 0,
                id: None,
                name: None,
                text: &whole,
            });
        }
        Step::Done
    }

    /// The answer so far (complete after [`Step::Done`]).
    pub fn finish(&self) -> Assembled {
        match self {
            Assembler::Chat(a) => a.finish(),
            Assembler::Responses(a) => a.finish(),
            Assembler::Messages(a) => a.finish(),
        }
    }
}

/// Reads the text, finish reason, usage and model of a non-streamed answer
/// of the Responses or Messages API (chat answers are read without a tree,
/// by `body::fields`).
pub fn read_answer(api: Api, v: &Value) -> Assembled {
    let mut a = match api {
        Api::Chat => chat::read_answer(v),
        Api::Responses => responses::read_answer(v),
        Api::Messages => messages::read_answer(v),
    };
    a.completion = v.clone();
    a
}

/// The error message of an error payload ([`crate::sse::error_message`],
/// else the payload itself).
pub(crate) fn error_message(v: &Value) -> String {
    crate::sse::error_message(v).unwrap_or_else(|| v.to_string())
}

/// Checks that `arguments` is JSON; `None` when it is.
pub(crate) fn check_arguments(at: String, name: &str, arguments: &str) -> Option<BadArguments> {
    let e = serde_json::from_str::<Value>(arguments).err()?;
    Some(BadArguments {
        at,
        name: name.to_string(),
        error: e.to_string(),
    })
}
