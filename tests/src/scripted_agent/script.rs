//! The scripted agent's answers as a pure state machine: one parsed request and
//! the time in, one HTTP response out. An honest agent's node and operations,
//! with the chosen misbehaviour applied where it shows on the HTTP level.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Method, Response, StatusCode};
use upkeep_common::api::{
    ComponentState, Condition, ConditionStatus, ConditionType, HostFacts, LoadAverage, NodePhase, NodeRole, NodeState,
    Operation, OperationKind, OperationList, OperationPhase, Step, StepName, StepStatus, UpgradeRequest,
};
use upkeep_common::ids::{ComponentName, NodeName, OperationId};
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail, Version};
use upkeep_net::response::{self, Body};

use super::Behaviour;

/// Operations kept for `GET /v1/operations` and token replays; older ones are forgotten.
const MAX_OPERATIONS: usize = 32;
/// Components one upgrade request may name.
const MAX_ARTIFACTS: usize = 16;
/// Components the node reports at most (the kubelet plus every one ever asked).
const MAX_COMPONENTS: usize = 32;
/// Where [`Behaviour::Redirect`] sends every request.
pub const REDIRECT_LOCATION: &str = "https://127.0.0.1:1/";
/// The code [`Behaviour::UnknownErrorCode`] answers, which no agent defines.
pub const UNKNOWN_CODE: &str = "quota_exhausted";
/// The message that goes with [`UNKNOWN_CODE`].
pub const UNKNOWN_CODE_MESSAGE: &str = "the node's quota is exhausted";
/// The body of [`Behaviour::UnreadableBody`].
pub const UNREADABLE_BODY: &str = "not json at all";

/// Which endpoint a request line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Healthz,
    /// `GET /v1/node`.
    Node,
    /// `GET /v1/operations`.
    Operations,
    /// `GET /v1/operations/{id}`, with the id as sent.
    Operation(String),
    /// `POST /v1/upgrades`.
    Upgrade,
    /// A known path with another method.
    MethodNotAllowed,
    /// Anything else.
    NotFound,
}

impl Route {
    /// The endpoint of `method` and `path` (the query is ignored).
    pub fn of(method: &Method, path: &str) -> Route {
        let path = path.split('?').next().unwrap_or_default();
        let (expected, route) = match path {
            "/healthz" => (Method::GET, Route::Healthz),
            "/v1/node" => (Method::GET, Route::Node),
            "/v1/operations" => (Method::GET, Route::Operations),
            "/v1/upgrades" => (Method::POST, Route::Upgrade),
            _ => match path.strip_prefix("/v1/operations/") {
                Some(id) if !id.is_empty() && !id.contains('/') => (Method::GET, Route::Operation(id.to_owned())),
                _ => return Route::NotFound,
            },
        };
        if *method == expected { route } else { Route::MethodNotAllowed }
    }
}

/// A request as the script sees it: the route, and for an upgrade the parsed body
/// (or the envelope saying why it did not parse).
#[derive(Debug)]
pub enum Call {
    /// Any route without a body.
    Read(Route),
    /// `POST /v1/upgrades`.
    Upgrade(Box<Result<UpgradeRequest, ErrorBody>>),
}

/// One operation and what the script knows about it.
#[derive(Debug)]
struct Tracked {
    operation: Operation,
    /// `GET /v1/operations/{id}` answered so far.
    polls: usize,
    /// The components the request named.
    components: Vec<ComponentName>,
    /// Whether its success changes the versions the node reports.
    installs: bool,
}

/// The scripted agent's state.
#[derive(Debug)]
pub struct Script {
    behaviour: Behaviour,
    node_name: NodeName,
    components: BTreeMap<ComponentName, Version>,
    /// Oldest first, at most [`MAX_OPERATIONS`].
    operations: VecDeque<Tracked>,
    created: u64,
    requests: usize,
    upgrade_requests: usize,
}

impl Script {
    /// A node named `node_name` whose kubelet runs `from_version`.
    pub fn new(behaviour: Behaviour, node_name: NodeName, from_version: Version) -> Script {
        let kubelet: ComponentName = "kubelet".parse().expect("a valid component name");
        Script {
            behaviour,
            node_name,
            components: BTreeMap::from([(kubelet, from_version)]),
            operations: VecDeque::new(),
            created: 0,
            requests: 0,
            upgrade_requests: 0,
        }
    }

    /// The answer to one request received at `now`.
    pub fn answer(&mut self, call: Call, now: DateTime<Utc>) -> Response<Body> {
        self.requests += 1;
        let is_upgrade = matches!(call, Call::Upgrade(_));
        if is_upgrade {
            self.upgrade_requests += 1;
        }
        match self.behaviour {
            Behaviour::Unavailable { times } if self.requests <= times => {
                return response::error(&ErrorBody::new(
                    ErrorCode::DependencyUnavailable,
                    "the Kubernetes API server is unavailable",
                ));
            }
            Behaviour::Busy { times } if is_upgrade && self.upgrade_requests <= times => {
                return response::error(&ErrorBody::new(
                    ErrorCode::OperationInProgress,
                    "another operation is running on the node",
                ));
            }
            Behaviour::UnknownErrorCode => return unknown_code(),
            Behaviour::Redirect => return redirect(),
            Behaviour::UnreadableBody => {
                return response::with_body(StatusCode::OK, "application/json", UNREADABLE_BODY);
            }
            _ => {}
        }
        match call {
            Call::Upgrade(parsed) => match *parsed {
                Ok(request) => self.upgrade(&request, now),
                Err(refused) => response::error(&refused),
            },
            Call::Read(Route::Healthz) => response::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            Call::Read(Route::Node) => response::json(StatusCode::OK, &self.node(now)),
            Call::Read(Route::Operations) => {
                response::json(StatusCode::OK, &OperationList { operations: self.operations() })
            }
            Call::Read(Route::Operation(id)) => self.poll(&id, now),
            Call::Read(Route::Upgrade) => {
                response::error(&ErrorBody::new(ErrorCode::MalformedRequest, "this request needs a JSON body"))
            }
            Call::Read(Route::MethodNotAllowed) => {
                response::error(&ErrorBody::new(ErrorCode::MethodNotAllowed, "this path does not take that method"))
            }
            Call::Read(Route::NotFound) => response::error(&ErrorBody::new(ErrorCode::NotFound, "no such route")),
        }
    }

    /// The operations kept, newest first, as recorded (before any answer's twist).
    pub fn operations(&self) -> Vec<Operation> {
        self.operations.iter().rev().map(|tracked| tracked.operation.clone()).collect()
    }

    fn upgrade(&mut self, request: &UpgradeRequest, now: DateTime<Utc>) -> Response<Body> {
        let replay = request.request_token.as_ref().and_then(|token| {
            self.operations.iter().find(|tracked| tracked.operation.request_token.as_ref() == Some(token))
        });
        if let Some(known) = replay {
            return response::json(StatusCode::ACCEPTED, &known.operation);
        }
        if let Some(running) = self.operations.iter().find(|t| !t.operation.phase.is_terminal()) {
            return response::error(&ErrorBody::new(
                ErrorCode::OperationInProgress,
                format!("operation {} is running on the node", running.operation.id),
            ));
        }
        let components: Vec<ComponentName> =
            request.artifacts.iter().map(|artifact| artifact.component.clone()).collect();
        let known_after = self.components.keys().chain(&components).collect::<std::collections::BTreeSet<_>>().len();
        if components.len() > MAX_ARTIFACTS || known_after > MAX_COMPONENTS {
            return response::error(&ErrorBody::with_details(
                ErrorCode::ValidationFailed,
                "request has invalid fields",
                vec![ErrorDetail::new(
                    "artifacts",
                    "too_many",
                    format!("at most {MAX_ARTIFACTS} artifacts, {MAX_COMPONENTS} components on a node"),
                )],
            ));
        }
        self.created += 1;
        let from_version = components.first().and_then(|name| self.components.get(name)).cloned();
        let no_op = !components.is_empty()
            && components.iter().all(|name| self.components.get(name) == Some(&request.target_version));
        let target_version = match self.behaviour {
            Behaviour::WrongTarget => another_version(&request.target_version),
            _ => request.target_version.clone(),
        };
        let kind = match self.behaviour {
            Behaviour::WrongKind => OperationKind::Drain,
            _ => OperationKind::Upgrade,
        };
        let mut operation = Operation {
            id: format!("op-{}", self.created).parse().expect("a valid operation id"),
            request_token: request.request_token.clone(),
            kind,
            from_version,
            target_version: Some(target_version),
            phase: OperationPhase::Pending,
            steps: steps(OperationPhase::Pending, None),
            errors: Vec::new(),
            created_at: now,
            started_at: None,
            finished_at: None,
            requested_by: "scripted".to_owned(),
            accepted_risks: Vec::new(),
            dry_run: request.dry_run,
            no_op,
        };
        if no_op {
            operation.phase = OperationPhase::Succeeded;
            operation.steps = steps(OperationPhase::Succeeded, Some(now));
            operation.started_at = Some(now);
            operation.finished_at = Some(now);
        }
        let answer = response::json(StatusCode::ACCEPTED, &operation);
        let installs = installs(self.behaviour, request) && !no_op;
        self.operations.push_back(Tracked { operation, polls: 0, components, installs });
        while self.operations.len() > MAX_OPERATIONS {
            self.operations.pop_front();
        }
        answer
    }

    fn poll(&mut self, id: &str, now: DateTime<Utc>) -> Response<Body> {
        let behaviour = self.behaviour;
        let Some(index) = self.operations.iter().position(|tracked| tracked.operation.id.as_str() == id) else {
            return response::error(&ErrorBody::new(ErrorCode::NotFound, format!("no operation {id:?}")));
        };
        let tracked = &mut self.operations[index];
        let was = tracked.operation.phase;
        if !was.is_terminal() {
            tracked.polls += 1;
            let phase = phase_after_polls(behaviour, tracked.polls);
            let operation = &mut tracked.operation;
            operation.phase = phase;
            operation.steps = steps(phase, Some(now));
            if phase != OperationPhase::Pending {
                operation.started_at.get_or_insert(now);
            }
            if phase.is_terminal() {
                operation.finished_at = Some(now);
            }
        }
        let mut answer = tracked.operation.clone();
        if !was.is_terminal() && answer.phase == OperationPhase::Succeeded && tracked.installs {
            let target = answer.target_version.clone().expect("an upgrade has a target");
            for name in &tracked.components {
                self.components.insert(name.clone(), target.clone());
            }
        }
        if behaviour == Behaviour::RunsAgainAfterSucceeding && answer.phase == OperationPhase::Succeeded {
            // Answered Succeeded, yet it runs on: the node and later answers say Running.
            self.operations[index].operation.phase = OperationPhase::Running;
        }
        if behaviour == Behaviour::WrongOperationId {
            answer.id = another_id(&answer.id);
        }
        response::json(StatusCode::OK, &answer)
    }

    fn node(&self, now: DateTime<Utc>) -> NodeState {
        let running = self.operations.iter().find(|tracked| !tracked.operation.phase.is_terminal());
        let name = match self.behaviour {
            Behaviour::WrongNodeName => {
                format!("impostor-{}", self.node_name).parse().unwrap_or_else(|_| "impostor".parse().expect("valid"))
            }
            _ => self.node_name.clone(),
        };
        let components = self
            .components
            .iter()
            .map(|(component, version)| ComponentState {
                name: component.clone(),
                observed_version: Some(version.clone()),
                desired_version: running
                    .filter(|tracked| tracked.components.contains(component))
                    .and_then(|tracked| tracked.operation.target_version.clone()),
                observed_at: Some(now),
                probe_error: None,
            })
            .collect();
        let progressing = if running.is_some() { ConditionStatus::True } else { ConditionStatus::False };
        let condition = |kind, status, reason: &str| Condition {
            kind,
            status,
            reason: reason.to_owned(),
            message: format!("{reason} (scripted)"),
            last_transition_time: now,
        };
        NodeState {
            name,
            role: NodeRole::Worker,
            phase: if running.is_some() { NodePhase::Upgrading } else { NodePhase::Idle },
            cordoned: false,
            components,
            conditions: vec![
                condition(ConditionType::Available, ConditionStatus::True, "ComponentsAnswer"),
                condition(ConditionType::Progressing, progressing, "OperationState"),
                condition(ConditionType::Degraded, ConditionStatus::False, "Healthy"),
            ],
            current_operation: running.map(|tracked| tracked.operation.id.clone()),
            history: Vec::new(),
            host: HostFacts {
                arch: "amd64".to_owned(),
                os: "Debian GNU/Linux 12".to_owned(),
                kernel: "6.1.0".to_owned(),
                cpus: 2,
                memory_total_bytes: 4 << 30,
                memory_available_bytes: 2 << 30,
                disk_path: "/var/lib/upkeep".to_owned(),
                disk_free_bytes: Some(10 << 30),
                uptime_seconds: 3600,
                load: LoadAverage { one: 0.1, five: 0.1, fifteen: 0.1 },
            },
        }
    }
}

/// The phase of an operation that was not yet terminal, after its `polls`-th
/// `GET /v1/operations/{id}` (counting from 1).
pub fn phase_after_polls(behaviour: Behaviour, polls: usize) -> OperationPhase {
    match (behaviour, polls) {
        (_, 0 | 1) => OperationPhase::Running,
        (Behaviour::StaysRunning, _) => OperationPhase::Running,
        (Behaviour::PhaseGoesBack, _) => OperationPhase::Pending,
        (Behaviour::RunsAgainAfterSucceeding, 2) => OperationPhase::Succeeded,
        (Behaviour::RunsAgainAfterSucceeding, _) => OperationPhase::Running,
        _ => OperationPhase::Succeeded,
    }
}

/// Whether the operation for `request` changes the versions the node reports
/// when it succeeds: not for a dry run or one that only stages, nor where the
/// script records it as a drain or says it changes nothing.
fn installs(behaviour: Behaviour, request: &UpgradeRequest) -> bool {
    !matches!(behaviour, Behaviour::SucceedsWithoutChange | Behaviour::WrongKind)
        && !request.dry_run
        && !request.stage_only
}

/// Every upgrade step, with statuses that fit `phase`.
fn steps(phase: OperationPhase, now: Option<DateTime<Utc>>) -> Vec<Step> {
    StepName::UPGRADE
        .iter()
        .enumerate()
        .map(|(index, &name)| {
            let status = match (phase, index) {
                (OperationPhase::Succeeded, _) => StepStatus::Success,
                (OperationPhase::Running, 0) => StepStatus::Running,
                _ => StepStatus::Init,
            };
            let started_at = if status == StepStatus::Init { None } else { now };
            let finished_at = if status == StepStatus::Success { now } else { None };
            Step { name, status, started_at, finished_at, message: String::new() }
        })
        .collect()
}

/// A version other than `version`: the next patch (the previous one at the very top).
fn another_version(version: &Version) -> Version {
    let patch = version.patch().checked_add(1).unwrap_or(version.patch() - 1);
    Version::new(version.major(), version.minor(), patch)
}

/// An operation id other than `id`.
fn another_id(id: &OperationId) -> OperationId {
    format!("other-{id}").parse().unwrap_or_else(|_| "other-operation".parse().expect("a valid operation id"))
}

/// 429 with a well-formed envelope whose code no agent defines.
fn unknown_code() -> Response<Body> {
    let envelope = ErrorBody::new(ErrorCode::Internal, UNKNOWN_CODE_MESSAGE);
    let mut value = serde_json::to_value(&envelope).expect("the envelope serializes");
    value["error"]["code"] = serde_json::Value::String(UNKNOWN_CODE.to_owned());
    response::json(StatusCode::TOO_MANY_REQUESTS, &value)
}

/// 307 to [`REDIRECT_LOCATION`], with an empty body.
fn redirect() -> Response<Body> {
    let mut answer = response::with_body(StatusCode::TEMPORARY_REDIRECT, "text/plain", "");
    answer.headers_mut().insert(LOCATION, HeaderValue::from_static(REDIRECT_LOCATION));
    answer
}
