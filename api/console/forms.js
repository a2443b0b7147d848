// Draws a source definition's form (GET .../source-definitions/{id}/form, made by api/forms.py)
// and reads it back as a configuration. Every input carries data-path (the dotted path a
// result's job_info.fields names), so a failure can point at it.
"use strict";

window.SCForms = (() => {
  const MASK = "**********";

  class InputError extends Error {
    constructor(path, message) {
      super(message);
      this.path = path;
    }
  }

  const idOf = (path) => "cfg-" + path.replace(/[^A-Za-z0-9_-]/g, "--");

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children);
    return node;
  }

  // An empty input: null when editing a stored source (so a cleared optional field is saved
  // as cleared), left out otherwise (the schema's default applies).
  const empty = (field, stored) => (stored && field.nullable ? null : undefined);

  function wrap(field, control, { after = false } = {}) {
    const id = idOf(field.path);
    const label = el("label", { for: id, text: field.title + (field.required ? " *" : "") });
    const parts = after ? [control, label] : [label, control];
    const box = el("div", { class: "field field-" + field.kind + (after ? " inline" : "") }, ...parts);
    if (field.description) {
      control.setAttribute("aria-describedby", id + "-help");
      box.append(el("p", { id: id + "-help", class: "help", text: field.description }));
    }
    return box;
  }

  function scalar(field) {
    const id = idOf(field.path);
    const common = { id, name: field.path, "data-path": field.path, required: field.required };
    let input;
    if (field.kind === "textarea" || field.kind === "list" || field.kind === "json") {
      input = el("textarea", { ...common, rows: field.kind === "textarea" ? 4 : 3, spellcheck: "false",
        placeholder: field.kind === "list" ? "one per line" : field.placeholder });
    } else if (field.kind === "select") {
      input = el("select", common);
      if (!field.required || field.nullable) input.append(el("option", { value: "", text: "(default)" }));
      field.options.forEach((option, index) => input.append(el("option", { value: String(index), text: String(option) })));
    } else if (field.kind === "boolean") {
      input = el("input", { ...common, type: "checkbox", required: false });
    } else if (field.kind === "integer" || field.kind === "number") {
      input = el("input", { ...common, type: "number", inputmode: "numeric", step: field.kind === "integer" ? 1 : "any",
        min: field.minimum, max: field.maximum, placeholder: field.placeholder });
    } else {
      input = el("input", { ...common, type: field.secret ? "password" : "text", spellcheck: "false",
        autocomplete: field.secret ? "new-password" : "off", placeholder: field.placeholder });
    }
    const node = wrap(field, input, { after: field.kind === "boolean" });

    function get(stored) {
      if (field.kind === "boolean") return input.checked;
      const raw = input.value;
      if (raw === "") return field.secret ? undefined : empty(field, stored); // a secret left empty: unchanged
      if (field.kind === "select") return field.options[Number(raw)];
      if (field.kind === "integer" || field.kind === "number") return Number(raw);
      if (field.kind === "list") {
        const items = raw.split("\n").map((line) => line.trim()).filter(Boolean);
        return field.item_kind === "text" ? items : items.map(Number);
      }
      if (field.kind === "json") {
        try {
          return JSON.parse(raw);
        } catch {
          throw new InputError(field.path, `${field.title}: not valid JSON`);
        }
      }
      return raw;
    }

    function set(value) {
      const shown = value === undefined ? field.default : value;
      if (field.secret) {
        input.value = "";
        input.placeholder = value === MASK ? "unchanged" : "";
      } else if (field.kind === "boolean") {
        input.checked = Boolean(shown);
      } else if (field.kind === "select") {
        const index = field.options.findIndex((option) => option === shown);
        input.value = index >= 0 ? String(index) : (input.options[0]?.value ?? "");
      } else if (field.kind === "list") {
        input.value = Array.isArray(shown) ? shown.join("\n") : "";
      } else if (field.kind === "json") {
        input.value = shown === undefined || shown === null ? "" : JSON.stringify(shown, null, 2);
      } else {
        input.value = shown === undefined || shown === null ? "" : String(shown);
      }
    }
    return { field, node, get, set };
  }

  function object(field) {
    const inner = group(field.fields);
    const box = el("fieldset", { class: "group", "data-path": field.path }, el("legend", { text: field.title }));
    if (field.description) box.append(el("p", { class: "help", text: field.description }));
    let toggle = null;
    if (field.nullable || !field.required) {
      toggle = el("input", { type: "checkbox", id: idOf(field.path) + "--on" });
      box.append(el("div", { class: "field inline" }, toggle, el("label", { for: toggle.id, text: "Use " + field.title })));
      toggle.addEventListener("change", () => { inner.node.hidden = !toggle.checked; });
      inner.node.hidden = true;
    }
    box.append(inner.node);
    return {
      field,
      node: box,
      get(stored) {
        if (toggle && !toggle.checked) return empty(field, stored);
        return inner.get(stored);
      },
      set(value) {
        if (toggle) {
          toggle.checked = value !== undefined && value !== null;
          inner.node.hidden = !toggle.checked;
        }
        inner.set(value || undefined);
      },
    };
  }

  function choice(field) {
    const id = idOf(field.path);
    const select = el("select", { id, name: field.path, "data-path": field.path });
    if (field.nullable) select.append(el("option", { value: "", text: "(none)" }));
    field.choices.forEach((option) => select.append(el("option", { value: option.value, text: option.title })));
    const box = el("fieldset", { class: "group", "data-path": field.path }, el("legend", { text: field.title }));
    box.append(wrap({ ...field, title: field.title + ": method", description: field.description }, select));
    const slot = el("div", { class: "choice" });
    box.append(slot);
    let branch = null;
    function draw() {
      const option = field.choices.find((c) => c.value === select.value);
      branch = option ? group(option.fields) : null;
      slot.replaceChildren(...(branch ? [branch.node] : []));
      branch?.set(undefined);
    }
    select.addEventListener("change", draw);
    draw();
    return {
      field,
      node: box,
      get(stored) {
        if (!select.value) return empty(field, stored);
        return { [field.discriminator]: select.value, ...branch.get(stored) };
      },
      set(value) {
        const tag = value && typeof value === "object" ? value[field.discriminator] : undefined;
        select.value = field.choices.some((c) => c.value === tag) ? tag : (select.options[0]?.value ?? "");
        draw();
        branch?.set(value && typeof value === "object" ? value : undefined);
      },
    };
  }

  function group(fields) {
    const controls = fields.map((f) => (f.kind === "object" ? object(f) : f.kind === "choice" ? choice(f) : scalar(f)));
    const node = el("div", { class: "fields" }, ...controls.map((c) => c.node));
    return {
      node,
      get(stored) {
        const out = {};
        for (const control of controls) {
          const value = control.get(stored);
          if (value !== undefined) out[control.field.name] = value;
        }
        return out;
      },
      set(value) {
        for (const control of controls) control.set(value ? value[control.field.name] : undefined);
      },
    };
  }

  // The form's controller: read it, fill it, point at fields, clear its secrets.
  function render(container, form) {
    const root = group(form.fields);
    container.replaceChildren(root.node);
    root.set(undefined);
    return {
      get: (stored) => root.get(stored),
      set: (configuration) => root.set(configuration),
      markInvalid(paths) {
        const marked = [];
        for (const path of paths) {
          // The nearest drawn field: "ssh_tunnel.auth.password" may be inside a branch not shown.
          let target = null;
          for (let parts = path.split("."); parts.length && !target; parts.pop()) {
            target = container.querySelector(`[data-path="${CSS.escape(parts.join("."))}"]`);
          }
          if (!target) continue;
          target.setAttribute("aria-invalid", "true");
          target.classList.add("invalid");
          target.closest(".field")?.classList.add("has-error");
          marked.push(target);
        }
        return marked;
      },
      clearInvalid() {
        container.querySelectorAll(".invalid").forEach((node) => {
          node.classList.remove("invalid");
          node.removeAttribute("aria-invalid");
        });
        container.querySelectorAll(".has-error").forEach((node) => node.classList.remove("has-error"));
      },
      clearSecrets() {
        container.querySelectorAll('input[type="password"]').forEach((input) => { input.value = ""; });
      },
    };
  }

  return { render, InputError, MASK };
})();
