//! `nixmoxlab_application`: an application of the lab's identity provider,
//! standing in for `authentik_application`: its slug names the issuer
//! (`/application/o/<slug>/`) and `protocol_provider` the OAuth2 provider
//! that serves it. Read asks the admin API, so drift is real.

use crate::api::{Api, Found};
use crate::values::{attr, need_text, string, text};
use crate::Shared;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{ValueEmpty, ValueString};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State<'a> {
    #[serde(borrow)]
    pub id: ValueString<'a>,
    #[serde(borrow)]
    pub name: ValueString<'a>,
    #[serde(borrow)]
    pub slug: ValueString<'a>,
    #[serde(borrow)]
    pub protocol_provider: ValueString<'a>,
}

pub struct Application {
    pub shared: Shared,
}

fn from_api<'a>(o: &Json) -> Option<State<'a>> {
    let s = |k: &str| o[k].as_str().map(str::to_string);
    Some(State {
        id: string(s("slug")?),
        name: string(s("name")?),
        slug: string(s("slug")?),
        protocol_provider: string(s("provider")?),
    })
}

fn body(diags: &mut Diagnostics, st: &State) -> Option<Json> {
    Some(json!({
        "name": need_text(diags, &st.name, "name")?,
        "slug": need_text(diags, &st.slug, "slug")?,
        "provider": need_text(diags, &st.protocol_provider, "protocol_provider")?,
    }))
}

fn path(slug: &str) -> String {
    format!("/api/v3/core/applications/{slug}/")
}

/// Slugs name issuers and URL paths: a conservative alphabet.
fn safe_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
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
            diags.root_error_short(format!("nixmoxlab: {what}: the application is gone"));
            None
        }
    }
}

#[async_trait]
impl Resource for Application {
    type State<'a> = State<'a>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::{Computed, Required};
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "An application: a STAND-IN for authentik_application",
                ),
                attributes: map! {
                    "id" => attr(AttributeType::String, Computed, "The application's slug"),
                    "name" => attr(AttributeType::String, Required, "The application's name"),
                    "slug" => attr(AttributeType::String, Required, "Its slug, which names its issuer; changing it replaces the application"),
                    "protocol_provider" => attr(AttributeType::String, Required, "The id of the OAuth2 provider that serves it"),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Some(slug) = text(&config.slug) {
            if !safe_slug(&slug) {
                diags.error_short(
                    "slug must be lowercase letters, digits, '-' and '_'",
                    AttributePath::new("slug"),
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
        let Some(slug) = text(&state.slug).filter(|s| safe_slug(s)) else {
            return Some((state, private));
        };
        let Some(api) = self
            .shared
            .settings(diags)
            .and_then(|s| Api::new(diags, &s))
        else {
            return Some((state, private));
        };
        match api.call(diags, "GET", &path(&slug), None) {
            Some(Found::Gone) => None,
            Some(found) => match object(diags, found, &format!("application {slug}")) {
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
        planned.id = planned.slug.clone();
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
        let replace = if proposed.slug != prior.slug {
            vec![AttributePath::new("slug")]
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
        let b = body(diags, &planned)?;
        let found = api.call(diags, "POST", "/api/v3/core/applications/", Some(&b))?;
        object(diags, found, "creating an application").map(|st| (st, planned_private))
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
        let slug = need_text(diags, &prior.slug, "slug")?;
        let b = body(diags, &planned)?;
        let found = api.call(diags, "PATCH", &path(&slug), Some(&b))?;
        object(diags, found, &format!("application {slug}")).map(|st| (st, planned_private))
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
        let slug = need_text(diags, &prior.slug, "slug")?;
        api.call(diags, "DELETE", &path(&slug), None).map(|_| ())
    }
}
