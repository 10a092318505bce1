//! The pipeline of socbridge: configuration, the scheduler, pollers with real cursors, and
//! ingest into the store (see ARCHITECTURE.md, "The path of a signal").

pub mod config;
mod containment;
pub mod engine;
mod leasing;
pub mod metrics;
pub mod poll;
mod push;
pub mod settings;
pub mod sinks;
mod sources_view;
pub mod symantec;
pub mod ticketing;
pub mod umbrella;
mod writeback;
pub mod xdr;

pub use config::{
    Config, ConfigError, CredentialSpec, ServiceNowSpec, SourceSpec, TenantSpec, XdrSpec,
};
pub use engine::{ApplyReport, Engine, EngineError, EngineOptions};
pub use leasing::RoundReport;
pub use metrics::{EngineMetrics, MetricsSnapshot, OutboxResult, PollCounters, SinkCounters};
pub use poll::PollReport;
pub use settings::{
    CredentialSettings, PollSettings, SecureEndpointSettings, SourceSettings, SymantecMssSettings,
    UmbrellaSettings, WorkflowMapping,
};
pub use sinks::{SinkReport, SinkSettings, SinkSpec};
pub use ticketing::{OutboxReport, SyncReport, TicketFields, TicketingSettings, WebhookError};
pub use xdr::XdrSettings;
