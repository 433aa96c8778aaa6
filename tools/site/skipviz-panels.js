// Kernel-free figure panels (tools/static_panels.py): controls that look like the notebook's,
// drawn from the panel's manifest, switch between the pictures rendered when the site was built.
// A combination that was not rendered is shown as unavailable, never as another state.
(function () {
  "use strict";

  function make(tag, attrs, text) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (text !== undefined) { el.textContent = text; }
    return el;
  }

  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

  function setUp(panel, number) {
    var manifest = JSON.parse(panel.getAttribute("data-manifest"));
    var base = panel.getAttribute("data-base");
    var box = panel.querySelector(".skipviz-static-controls");
    var img = panel.querySelector("img");
    var status = panel.querySelector(".skipviz-static-status");
    var opening = manifest.states[0].values.slice();
    var current = opening.slice();
    var masks = {};  // a toggles control's current mask
    var inputs = [];

    function show() {
      var found = null;
      manifest.states.forEach(function (s) { if (!found && same(s.values, current)) { found = s; } });
      if (found) {
        img.src = base + found.image;
        img.alt = [manifest.alt, found.alt].filter(Boolean).join(" ") || "an interactive figure";
        panel.classList.remove("skipviz-unavailable");
        img.removeAttribute("aria-hidden");
        status.textContent = "State " + (manifest.states.indexOf(found) + 1) + " of " +
          manifest.states.length + " pre-rendered for this page; run the notebook for any other.";
      } else {
        panel.classList.add("skipviz-unavailable");
        img.setAttribute("aria-hidden", "true");
        status.textContent = "Not pre-rendered: this combination needs the notebook running. " +
          "Reset, or change one control at a time from the opening state.";
      }
    }

    manifest.controls.forEach(function (c, k) {
      var id = "skipviz-p" + number + "-c" + k;
      var wrap = make("div", { "class": "skipviz-control skipviz-" + c.kind });
      if (c.kind === "slider") {
        var label = make("label", { "for": id }, c.description);
        var range = make("input", { type: "range", id: id, min: "0", max: String(c.values.length - 1),
          step: "1", value: String(opening[k]), "aria-valuetext": c.labels[opening[k]] });
        var out = make("output", { "for": id }, c.labels[opening[k]]);
        range.addEventListener("input", function () {
          current[k] = Number(range.value);
          range.setAttribute("aria-valuetext", c.labels[current[k]]);
          out.textContent = c.labels[current[k]];
          show();
        });
        wrap.append(label, range, out);
        inputs.push(function () { range.value = String(opening[k]); range.dispatchEvent(new Event("input")); });
      } else if (c.kind === "dropdown") {
        var lab = make("label", { "for": id }, c.description);
        var select = make("select", { id: id });
        c.labels.forEach(function (text, v) { select.append(make("option", { value: String(v) }, text)); });
        select.value = String(opening[k]);
        select.addEventListener("change", function () { current[k] = Number(select.value); show(); });
        wrap.append(lab, select);
        inputs.push(function () { select.value = String(opening[k]); current[k] = opening[k]; });
      } else if (c.kind === "checkbox") {
        var box1 = make("input", { type: "checkbox", id: id });
        box1.checked = c.values[opening[k]] === true;
        box1.addEventListener("change", function () {
          current[k] = c.values.indexOf(box1.checked);
          show();
        });
        wrap.append(box1, make("label", { "for": id }, c.description));
        inputs.push(function () { box1.checked = c.values[opening[k]] === true; current[k] = opening[k]; });
      } else if (c.kind === "toggles") {
        masks[k] = c.values[opening[k]].slice();
        var group = make("div", { role: "group", "aria-label": c.description + " (pressed = on)" });
        group.append(make("span", { "class": "skipviz-toggles-title" }, c.description + " (pressed = on)"));
        var buttons = c.switches.map(function (name, i) {
          var b = make("button", { type: "button", "aria-pressed": String(masks[k][i]),
            "aria-label": c.description + " " + name }, name);
          b.addEventListener("click", function () {
            masks[k][i] = !masks[k][i];
            b.setAttribute("aria-pressed", String(masks[k][i]));
            var at = -1;
            c.values.forEach(function (m, v) { if (at < 0 && same(m, masks[k])) { at = v; } });
            current[k] = at;
            show();
          });
          group.append(b);
          return b;
        });
        wrap.append(group);
        Object.keys(c.presets || {}).forEach(function (name) {
          var preset = make("button", { type: "button", "class": "skipviz-preset" }, name);
          preset.addEventListener("click", function () {
            masks[k] = c.presets[name].slice();
            buttons.forEach(function (b, i) { b.setAttribute("aria-pressed", String(masks[k][i])); });
            var at = -1;
            c.values.forEach(function (m, v) { if (at < 0 && same(m, masks[k])) { at = v; } });
            current[k] = at;
            show();
          });
          wrap.append(preset);
        });
        inputs.push(function () {
          masks[k] = c.values[opening[k]].slice();
          buttons.forEach(function (b, i) { b.setAttribute("aria-pressed", String(masks[k][i])); });
          current[k] = opening[k];
        });
      }
      box.append(wrap);
    });
    var reset = make("button", { type: "button", "class": "skipviz-reset" }, "Reset");
    reset.addEventListener("click", function () {
      inputs.forEach(function (f) { f(); });
      current = opening.slice();
      show();
    });
    box.append(reset);
    show();
  }

  function start() {
    document.querySelectorAll(".skipviz-static-panel").forEach(function (panel, n) {
      if (!panel.hasAttribute("data-ready")) { panel.setAttribute("data-ready", "1"); setUp(panel, n); }
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
