//! Text generation: greedy decoding or temperature / top-p sampling with a
//! seed, over a KV cache, with the same hooks as a forward pass (steering
//! edits apply at every step), and chat prompts through the model's template.
use crate::interrupt;
use crate::model::hooks::Hooks;
use crate::model::llama::{Batch, KvCache, Llama, Logits};
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tch::Kind;

/// How to continue a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// The most new tokens to produce; fewer when the model ends its turn.
    pub max_tokens: usize,
    /// 0 decodes greedily; otherwise logits are divided by it before sampling.
    pub temperature: f64,
    /// Nucleus sampling: draw only among the most likely tokens whose
    /// probabilities add up to `top_p` (1 keeps them all).
    pub top_p: f64,
    /// Seed of the sampler, so a sampled completion can be repeated.
    pub seed: u64,
    /// Wrap the prompt as a user message in the model's chat template.
    pub chat: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 64,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            chat: false,
        }
    }
}

impl GenerateOptions {
    pub fn check(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// Picks the next token from a row of logits.
pub struct Sampler {
    temperature: f64,
    top_p: f64,
    rng: StdRng,
}

impl Sampler {
    pub fn new(options: &GenerateOptions) -> Self {
        Sampler {
            temperature: options.temperature,
            top_p: options.top_p,
            rng: StdRng::seed_from_u64(options.seed),
        }
    }

    pub fn next(&mut self, logits: &[f32]) -> u32 {
        if self.temperature == 0.0 {
            return argmax(logits);
        }
        let scaled: Vec<f64> = logits
            .iter()
            .map(|&l| l as f64 / self.temperature)
            .collect();
        let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut probs: Vec<(u32, f64)> = scaled
            .iter()
            .enumerate()
            .map(|(id, &l)| (id as u32, (l - max).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        // Keep the smallest head of the sorted distribution holding top_p of the mass.
        let mut kept = 0;
        let mut mass = 0.0;
        while kept < probs.len() && (kept == 0 || mass < self.top_p * total) {
            mass += probs[kept].1;
            kept += 1;
        }
        let mut draw = self.rng.random::<f64>() * mass;
        for &(id, p) in &probs[..kept] {
            if draw < p {
                return id;
            }
            draw -= p;
        }
        probs[kept - 1].0
    }
}

/// The first index of the largest value, as `torch.argmax` breaks ties.
fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Continues `prompt` token by token until a `stop` id (not returned) or
/// `max_tokens`. The prompt runs once; each later step feeds one token
/// through the KV cache.
pub fn generate_ids(
    llama: &Llama,
    prompt: &[u32],
    options: &GenerateOptions,
    stop: &[u32],
    hooks: &Hooks,
) -> Result<Vec<u32>> {
    options.check()?;
    let mut sampler = Sampler::new(options);
    let mut cache = KvCache::new(llama.config.n_layers);
    let mut generated = Vec::new();
    let mut input = Batch::single(prompt)?;
    let room = llama.config.context_length.saturating_sub(prompt.len());
    for _ in 0..options.max_tokens.min(room) {
        interrupt::check()?;
        let out = llama.forward(&input, hooks, Logits::Last, Some(&mut cache))?;
        let logits = out
            .logits
            .ok_or_else(|| Error::invalid("the model returned no logits"))?;
        let row = Vec::<f32>::try_from(
            logits
                .f_to_kind(Kind::Float)?
                .f_to(tch::Device::Cpu)?
                .f_reshape([-1])?,
        )?;
        let next = sampler.next(&row);
        if stop.contains(&next) {
            break;
        }
        generated.push(next);
        input = Batch::single(&[next])?;
    }
    Ok(generated)
}

/// The paper's prompt format, for models that ship no chat template.
const HUMAN_ASSISTANT: &str = "\n\nHuman: {{ messages[0]['content'] }}\n\nAssistant:";

/// Instructions a chat template may run. A real one spends a few thousand
/// on a one-message conversation; a hostile one looping without end stops.
const CHAT_TEMPLATE_FUEL: u64 = 1_000_000;

/// `user` as a one-message conversation in `template` (Jinja, as Hugging
/// Face stores it), ending where the assistant's reply begins.
pub fn chat_prompt(template: Option<&str>, user: &str, bos: &str, eos: &str) -> Result<String> {
    // The template comes from the model file, so it is rendered in a
    // sandbox: the environment has no loader (minijinja's `loader` feature
    // is off, so `include`, `import` and `extends` find no templates and no
    // file is read), no function reaches the network, and fuel bounds the
    // instructions a loop can spend.
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(CHAT_TEMPLATE_FUEL));
    // transformers renders templates with trim_blocks and lstrip_blocks on.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_function(
        "raise_exception",
        |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                message,
            ))
        },
    );
    let context = minijinja::context! {
        messages => vec![minijinja::context! { role => "user", content => user }],
        add_generation_prompt => true,
        bos_token => bos,
        eos_token => eos,
    };
    env.render_str(template.unwrap_or(HUMAN_ASSISTANT), context)
        .map_err(|e| Error::invalid(format!("the model's chat template failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_largest_logit() {
        let mut sampler = Sampler::new(&GenerateOptions::default());
        assert_eq!(sampler.next(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn sampling_repeats_with_a_seed_and_respects_top_p() {
        let logits = [2.0f32, 1.9, 0.0, -1.0, -5.0];
        let options = GenerateOptions {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
            ..Default::default()
        };
        let draws = |options: &GenerateOptions| {
            let mut sampler = Sampler::new(options);
            (0..200).map(|_| sampler.next(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(&options), draws(&options));
        assert!(draws(&options).iter().any(|&id| id >= 2));
        // The top two hold ~0.8 of the mass, so top_p 0.5 keeps only them.
        let nucleus = draws(&GenerateOptions {
            top_p: 0.5,
            ..options.clone()
        });
        assert!(nucleus.iter().all(|&id| id < 2), "{nucleus:?}");
        assert!(nucleus.contains(&0) && nucleus.contains(&1));
    }

    #[test]
    fn bad_sampling_options_are_errors() {
        for options in [
            GenerateOptions {
                temperature: -1.0,
                ..Default::default()
            },
            GenerateOptions {
                top_p: 0.0,
                ..Default::default()
            },
        ] {
            assert!(options.check().is_err());
        }
    }

    #[test]
    fn chat_prompts_follow_the_template() {
        let template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let prompt = chat_prompt(Some(template), "Hi", "", "").unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            chat_prompt(None, "Hi", "", "").unwrap(),
            "\n\nHuman: Hi\n\nAssistant:"
        );
        let err =
            chat_prompt(Some("{{ raise_exception('no system role') }}"), "x", "", "").unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn hostile_chat_templates_fail_cleanly_without_touching_files() {
        let marker = std::env::temp_dir().join(format!("saelab-template-{}", std::process::id()));
        std::fs::write(&marker, "SECRET-FROM-DISK").unwrap();
        let marker = marker.display().to_string();
        for template in [
            "{% include \"/etc/passwd\" %}".to_string(),
            format!("{{% include \"{marker}\" %}}"),
            format!("{{% import \"{marker}\" as m %}}{{{{ m }}}}"),
            format!("{{% from \"{marker}\" import x %}}{{{{ x }}}}"),
            format!("{{% extends \"{marker}\" %}}"),
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                .into(),
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}".into(),
            "{{ 'x' * 1000000000000 }}".into(),
            "{{ range(1000000000) | list }}".into(),
        ] {
            let started = std::time::Instant::now();
            let err = chat_prompt(Some(&template), "x", "", "").unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("chat template failed"),
                "{template}: {message}"
            );
            assert!(
                !message.contains("SECRET") && !message.contains("root:"),
                "{message}"
            );
            assert!(
                started.elapsed().as_secs() < 5,
                "{template} ran for {:?}",
                started.elapsed()
            );
        }
        std::fs::remove_file(&marker).unwrap();
    }
}
