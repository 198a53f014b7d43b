// agentmeter console: the little JavaScript it needs (charts, filters that apply on change, copy buttons).
"use strict";

function drawCharts() {
  if (typeof Plotly === "undefined") return;
  for (const el of document.querySelectorAll("div.chart[data-figure]")) {
    const source = document.getElementById(el.dataset.figure);
    if (!source) continue;
    const figure = JSON.parse(source.textContent);
    Plotly.newPlot(el, figure.data, figure.layout, { displaylogo: false, responsive: true })
      .then(() => el.setAttribute("data-drawn", "true"));
  }
}

function wireFilters() {
  for (const form of document.querySelectorAll("form.filters")) {
    // empty fields stay out of the URL: a shared link carries only the filters that are set
    form.addEventListener("submit", () => {
      for (const field of form.querySelectorAll("input, select")) {
        if (field.value === "") field.disabled = true;
      }
      const range = form.querySelector("select[name=range]");
      if (range && range.value === "custom") range.disabled = true;
      if (range && range.value !== "custom") {
        for (const name of ["since", "until"]) {
          const input = form.querySelector(`input[name=${name}]`);
          if (input) input.disabled = true;
        }
      }
    });
    for (const select of form.querySelectorAll("select.autosubmit")) {
      select.addEventListener("change", () => {
        if (select.classList.contains("range-select") && select.value === "custom") {
          form.querySelector(".custom-range").hidden = false;
          return;
        }
        if (select.name === "by" && select.value === "label") {
          const key = form.querySelector(".label-key");
          key.hidden = false;
          const input = key.querySelector("input");
          if (!input.value) { input.focus(); return; }
        }
        form.requestSubmit();
      });
    }
  }
}

function wireCopy() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const from = button.dataset.copyFrom ? document.getElementById(button.dataset.copyFrom) : null;
      const text = from ? from.textContent : button.dataset.copy;
      try {
        await navigator.clipboard.writeText(text);
      } catch (err) {  // no clipboard API (not a secure context): select it for Ctrl-C
        const range = document.createRange();
        range.selectNodeContents(from || button.previousElementSibling);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
      button.textContent = "copied";
      setTimeout(() => { button.textContent = from ? "copy" : "copy"; }, 1500);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wireFilters();
  wireCopy();
  drawCharts();
});
