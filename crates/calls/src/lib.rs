//! openum's call domain: what a Play-on-Phone call is, independent of EWS, SIP and storage.
//!
//! Both sides of the system depend on this crate and on nothing of each other: the server
//! (HTTP, EWS, store) hands calls to a [`CallService`]; the call runtime (SIP, RTP) implements
//! it, reports progress through a [`CallRecorder`] and reads message audio from an
//! [`AudioSource`]. The crate does no I/O.
//!
//! # Layout
//!
//! - [`state`]: [`CallState`] and [`Cause`], the one domain vocabulary for where a call is and
//!   why it ended, with their storage names.
//! - [`record`]: [`CallRecord`], the durable record of one call.
//! - [`id`]: PhoneCallId minting and parsing (`<uuid>@<node>`, base64).
//! - [`service`]: the [`CallService`] trait the runtime implements, [`PlaceError`], [`Hangup`]
//!   and the node without a gateway ([`NoGateway`]).
//! - [`recorder`]: the [`CallRecorder`] trait the call registry implements.
//! - [`audio`]: the [`AudioSource`] trait the voice-mail store implements.
//! - [`time`]: Unix time, the one clock reading records are stamped with.
//! - [`report`]: an error with its causes as one log line.
//! - [`sync`]: how locks are taken (poisoning is recovered from, once, here).

pub mod audio;
pub mod id;
pub mod record;
pub mod recorder;
pub mod report;
pub mod service;
pub mod state;
pub mod sync;
pub mod time;

pub use audio::{AudioError, AudioSource};
pub use record::CallRecord;
pub use recorder::{CallRecorder, RecordError};
pub use report::error_chain;
pub use service::{CallService, CallServiceFigures, Hangup, NoGateway, PlaceError};
pub use state::{CallState, Cause, UnknownName};
pub use time::{now_unix, UnixSeconds};
