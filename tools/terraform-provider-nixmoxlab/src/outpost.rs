//! `nixmoxlab_outpost`: an outpost of the lab's identity provider (an LDAP
//! or RADIUS front end that runs beside it and logs in to it with a token),
//! standing in for `authentik_outpost`. The identity provider makes the
//! token when the outpost is created; it is a sensitive attribute, and the
//! outpost's host needs it before the outpost can connect. Read asks the
//! admin API, so an outpost deleted behind Terraform's back is drift.

use crate::api::{Api, Found};
use crate::values::{attr, need_text, string, text};
use crate::Shared;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty, ValueString};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State<'a> {
    #[serde(borrow)]
    pub id: ValueString<'a>,
    #[serde(borrow)]
    pub name: ValueString<'a>,
    #[serde(borrow)]
    pub r#type: ValueString<'a>,
    #[serde(borrow)]
    pub token: ValueString<'a>,
}

pub struct Outpost {
    pub shared: Shared,
}

const TYPES: [&str; 3] = ["ldap", "radius", "proxy"];

fn from_api<'a>(o: &Json) -> Option<State<'a>> {
    let s = |k: &str| o[k].as_str().map(str::to_string);
    Some(State {
        id: string(s("pk")?),
        name: string(s("name")?),
        r#type: string(s("type")?),
        token: string(s("token")?),
    })
}

fn path(pk: &str) -> String {
    format!("/api/v3/outposts/instances/{pk}/")
}

fn object<'a>(diags: &mut Diagnostics, found: Found, what: &str) -> Option<State<'a>> {
    match found {
        Found::Object(o) => {
            let st = from_api(&o);
            if st.is_none() {
                diags.root_error_short(format!("nixmoxlab: {what}: an answer it should not give"));
            }
            st
        }
        Found::Gone => {
            diags.root_error_short(format!("nixmoxlab: {what}: the outpost is gone"));
            None
        }
    }
}

#[async_trait]
impl Resource for Outpost {
    type State<'a> = State<'a>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::{Computed, Required};
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain("An outpost: a STAND-IN for authentik_outpost"),
                attributes: map! {
                    "id" => attr(AttributeType::String, Computed, "The outpost's key in the identity provider"),
                    "name" => attr(AttributeType::String, Required, "The outpost's name"),
                    "type" => attr(AttributeType::String, Required, "ldap, radius or proxy; changing it replaces the outpost"),
                    "token" => Attribute {
                        sensitive: true,
                        ..attr(AttributeType::String, Computed, "The token the outpost logs in with")
                    },
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Some(t) = text(&config.r#type) {
            if !TYPES.contains(&t.as_str()) {
                diags.error_short(
                    "type must be \"ldap\", \"radius\" or \"proxy\"",
                    AttributePath::new("type"),
                );
            }
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Some(pk) = text(&state.id) else {
            return Some((state, private));
        };
        let Some(api) = self
            .shared
            .settings(diags)
            .and_then(|s| Api::new(diags, &s))
        else {
            return Some((state, private));
        };
        match api.call(diags, "GET", &path(&pk), None) {
            Some(Found::Gone) => None,
            Some(found) => match object(diags, found, &format!("outpost {pk}")) {
                Some(st) => Some((st, private)),
                None => Some((state, private)),
            },
            None => Some((state, private)),
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed;
        planned.id = Value::Unknown;
        planned.token = Value::Unknown;
        Some((planned, Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        prior_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let replace = if proposed.r#type != prior.r#type {
            vec![AttributePath::new("type")]
        } else {
            Vec::new()
        };
        Some((proposed, prior_private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        prior_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(prior_private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let settings = self.shared.settings(diags)?;
        let api = Api::new(diags, &settings)?;
        let body = json!({
            "name": need_text(diags, &planned.name, "name")?,
            "type": need_text(diags, &planned.r#type, "type")?,
        });
        let found = api.call(diags, "POST", "/api/v3/outposts/instances/", Some(&body))?;
        object(diags, found, "creating an outpost").map(|st| (st, planned_private))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let settings = self.shared.settings(diags)?;
        let api = Api::new(diags, &settings)?;
        let pk = need_text(diags, &prior.id, "id")?;
        let body = json!({ "name": need_text(diags, &planned.name, "name")? });
        let found = api.call(diags, "PATCH", &path(&pk), Some(&body))?;
        object(diags, found, &format!("outpost {pk}")).map(|st| (st, planned_private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let settings = self.shared.settings(diags)?;
        let api = Api::new(diags, &settings)?;
        let pk = need_text(diags, &prior.id, "id")?;
        api.call(diags, "DELETE", &path(&pk), None).map(|_| ())
    }
}
