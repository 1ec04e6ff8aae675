//! The three roles and their embedded default configurations.

/// Which collector a binary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// DaemonSet: OTLP in from workloads, batch, forward to the gateways.
    Agent,
    /// Deployment: tail sampling, batch, export to OllyScale.
    Gateway,
    /// Deployment: OTLP/HTTP from browsers (RUM), tag, forward to the gateways.
    Browser,
}

impl Role {
    /// The binary name.
    pub fn binary(self) -> &'static str {
        match self {
            Role::Agent => "agent-collector",
            Role::Gateway => "gateway-collector",
            Role::Browser => "browser-collector",
        }
    }

    /// The embedded default config (from the chart's values.yaml, as far as
    /// the components exist; see the README for what differs).
    pub fn default_config(self) -> &'static str {
        match self {
            Role::Agent => include_str!("defaults/agent.yaml"),
            Role::Gateway => include_str!("defaults/gateway.yaml"),
            Role::Browser => include_str!("defaults/browser.yaml"),
        }
    }
}
