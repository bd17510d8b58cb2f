//! The streamed Responses reply, as vLLM writes it for a plain text model: named SSE events
//! (`event: <type>\ndata: <json>\n\n`, no `[DONE]`; `responses/api_router.py`), each with its
//! `sequence_number` counted from 0 (`responses_stream_generator` in `responses/serving.py`):
//!
//! `response.created` and `response.in_progress` (the response object `in_progress`, no output,
//! `usage: null`), `response.output_item.added` (a `message` item, `in_progress`),
//! `response.content_part.added` (an empty `output_text`), one `response.output_text.delta` per
//! token, `response.output_text.done`, `response.content_part.done`,
//! `response.output_item.done`, and `response.completed` whose `response.usage` counts the whole
//! reply. The streamed item's id is a bare 32-hex uuid and its content index stays 0
//! (`responses/simple_streaming_events.py`), while the object in `response.completed` is rebuilt
//! by `responses_full_generator`, so its message has a fresh `msg_…` id, as in vLLM. Event keys
//! follow the openai-python event models (`openai/types/responses/response_*_event.py`).

use serde::Serialize;

use crate::generate::Null;
use crate::responses::{new_id_hex, MessageItem, Reply, ResponseObject, Status, TextPart};
use crate::sse::{self, Event};

#[derive(Serialize)]
struct Lifecycle<'a> {
    response: ResponseObject<'a>,
    sequence_number: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct ItemEvent {
    item: MessageItem,
    output_index: u32,
    sequence_number: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct PartEvent<'a> {
    content_index: u32,
    item_id: &'a str,
    output_index: u32,
    part: TextPart,
    sequence_number: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct DeltaEvent<'a> {
    content_index: u32,
    delta: &'a str,
    item_id: &'a str,
    logprobs: [Null; 0],
    output_index: u32,
    sequence_number: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct TextDoneEvent<'a> {
    content_index: u32,
    item_id: &'a str,
    logprobs: [Null; 0],
    output_index: u32,
    sequence_number: u32,
    text: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// Named events numbered in order.
#[derive(Default)]
struct Numbered {
    events: Vec<Event>,
}

impl Numbered {
    fn next(&self) -> u32 {
        u32::try_from(self.events.len()).unwrap_or(u32::MAX)
    }

    fn push<T: Serialize>(&mut self, kind: &str, value: &T, tokens: u32) {
        self.events.push(Event { bytes: sse::named_event(kind, value), tokens });
    }

    fn lifecycle(&mut self, reply: &Reply, kind: &'static str, status: Status) {
        let event =
            Lifecycle { response: reply.object(status), sequence_number: self.next(), kind };
        self.push(kind, &event, 0);
    }

    fn item(&mut self, item: MessageItem, kind: &'static str) {
        let event = ItemEvent { item, output_index: 0, sequence_number: self.next(), kind };
        self.push(kind, &event, 0);
    }

    fn delta(&mut self, item_id: &str, delta: &str) {
        let kind = "response.output_text.delta";
        let event = DeltaEvent {
            content_index: 0,
            delta,
            item_id,
            logprobs: [],
            output_index: 0,
            sequence_number: self.next(),
            kind,
        };
        self.push(kind, &event, 1);
    }

    fn text_done(&mut self, item_id: &str, text: String) {
        let kind = "response.output_text.done";
        let event = TextDoneEvent {
            content_index: 0,
            item_id,
            logprobs: [],
            output_index: 0,
            sequence_number: self.next(),
            text,
            kind,
        };
        self.push(kind, &event, 0);
    }

    fn part(&mut self, item_id: &str, part: TextPart, kind: &'static str) {
        let sequence_number = self.next();
        let event =
            PartEvent { content_index: 0, item_id, output_index: 0, part, sequence_number, kind };
        self.push(kind, &event, 0);
    }
}

/// Every event of the stream.
pub(crate) fn events(reply: &Reply) -> Vec<Event> {
    let mut out = Numbered::default();
    out.lifecycle(reply, "response.created", Status::InProgress);
    out.lifecycle(reply, "response.in_progress", Status::InProgress);
    let item_id = new_id_hex("");
    let announced = MessageItem {
        content: Vec::new(),
        status: "in_progress",
        annotations: None,
        logprobs: None,
        ..reply.message(item_id.clone(), None)
    };
    out.item(announced, "response.output_item.added");
    out.part(&item_id, reply.part(String::new(), Some([])), "response.content_part.added");
    for delta in reply.plan.pieces() {
        out.delta(&item_id, delta);
    }
    out.text_done(&item_id, reply.plan.text());
    out.part(&item_id, reply.part(reply.plan.text(), None), "response.content_part.done");
    out.item(reply.message(item_id.clone(), Some([])), "response.output_item.done");
    out.lifecycle(reply, "response.completed", Status::Done);
    out.events
}
