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
    var inputs = [];  // per control: set its widget (and current) to a state's values
    var menu = null;  // the menu of pre-rendered states
    var total = manifest.controls.reduce(function (n, c) {
      return c.kind === "toggles" ? Infinity : n * c.values.length; }, 1);

    function show() {
      var found = null;
      manifest.states.forEach(function (s) { if (!found && same(s.values, current)) { found = s; } });
      if (found) {
        img.src = base + found.image;
        img.alt = [manifest.alt, found.alt].filter(Boolean).join(" ") || "an interactive figure";
        panel.classList.remove("skipviz-unavailable");
        img.removeAttribute("aria-hidden");
        status.textContent = "State " + (manifest.states.indexOf(found) + 1) + " of " + manifest.states.length +
          (manifest.states.length >= total ? ": every combination of these controls is pre-rendered."
            : " pre-rendered for this page; run the notebook for any other.");
        if (menu) { menu.value = String(manifest.states.indexOf(found)); }
      } else {
        panel.classList.add("skipviz-unavailable");
        img.setAttribute("aria-hidden", "true");
        status.textContent = "Not pre-rendered: this combination needs the notebook running. " +
          "Reset, or pick one from the menu of pre-rendered states.";
        if (menu) { menu.value = ""; }
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
        inputs.push(function (to) {
          range.value = String(to[k]); current[k] = to[k];
          range.setAttribute("aria-valuetext", c.labels[to[k]]); out.textContent = c.labels[to[k]];
        });
      } else if (c.kind === "dropdown") {
        var lab = make("label", { "for": id }, c.description);
        var select = make("select", { id: id });
        c.labels.forEach(function (text, v) { select.append(make("option", { value: String(v) }, text)); });
        select.value = String(opening[k]);
        select.addEventListener("change", function () { current[k] = Number(select.value); show(); });
        wrap.append(lab, select);
        inputs.push(function (to) { select.value = String(to[k]); current[k] = to[k]; });
      } else if (c.kind === "checkbox") {
        var box1 = make("input", { type: "checkbox", id: id });
        box1.checked = c.values[opening[k]] === true;
        box1.addEventListener("change", function () {
          current[k] = c.values.indexOf(box1.checked);
          show();
        });
        wrap.append(box1, make("label", { "for": id }, c.description));
        inputs.push(function (to) { box1.checked = c.values[to[k]] === true; current[k] = to[k]; });
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
        inputs.push(function (to) {
          masks[k] = c.values[to[k]].slice();
          buttons.forEach(function (b, i) { b.setAttribute("aria-pressed", String(masks[k][i])); });
          current[k] = to[k];
        });
      }
      box.append(wrap);
    });
    function setAll(values) { inputs.forEach(function (f) { f(values); }); current = values.slice(); show(); }
    var reset = make("button", { type: "button", "class": "skipviz-reset" }, "Reset");
    reset.addEventListener("click", function () { setAll(opening); });
    box.append(reset);
    // Every pre-rendered state by name: the states a text discusses may be several clicks apart.
    if (manifest.states.length < total) {
      var menuId = "skipviz-p" + number + "-states";
      var wrapMenu = make("div", { "class": "skipviz-control skipviz-states" });
      menu = make("select", { id: menuId });
      menu.append(make("option", { value: "" }, "(not pre-rendered)"));
      manifest.states.forEach(function (s, v) {
        var title = /'([^']+)'/.exec(s.alt || "");
        var text = title ? title[1] : (s.alt || "").slice(0, 90);
        menu.append(make("option", { value: String(v) }, (v + 1) + ". " + text));
      });
      menu.addEventListener("change", function () {
        if (menu.value !== "") { setAll(manifest.states[Number(menu.value)].values); }
      });
      wrapMenu.append(make("label", { "for": menuId }, "Pre-rendered states"), menu);
      box.append(wrapMenu);
    }
    show();
  }

  function start() {
    document.querySelectorAll(".skipviz-static-panel").forEach(function (panel, n) {
      if (!panel.hasAttribute("data-ready")) { panel.setAttribute("data-ready", "1"); setUp(panel, n); }
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
