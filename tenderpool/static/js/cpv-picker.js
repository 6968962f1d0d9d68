// CPV picker: progressive enhancement of any <input data-cpv-picker>. Without JavaScript the
// field still accepts codes separated by commas. Suggestions come from /cpv?q=… (French labels).
(function () {
  "use strict";
  function setup(input) {
    var list = document.createElement("ul");
    var listId = input.id + "-suggestions";
    list.id = listId;
    list.className = "cpv-suggestions";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    input.setAttribute("aria-controls", listId);
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("autocomplete", "off");
    input.parentNode.insertBefore(list, input.nextSibling);
    var timer = null;
    var active = -1;

    function lastTerm() {
      var parts = input.value.split(",");
      return parts[parts.length - 1].trim();
    }
    function choose(code) {
      var parts = input.value.split(",").map(function (p) { return p.trim(); }).filter(Boolean);
      parts[parts.length ? parts.length - 1 : 0] = code;
      input.value = parts.join(", ") + ", ";
      list.hidden = true;
      input.focus();
    }
    function render(items) {
      list.innerHTML = "";
      active = -1;
      items.forEach(function (item, i) {
        var li = document.createElement("li");
        li.setAttribute("role", "option");
        li.id = listId + "-" + i;
        li.textContent = item.code + " — " + item.label;
        li.addEventListener("mousedown", function (event) { event.preventDefault(); choose(item.code); });
        list.appendChild(li);
      });
      list.hidden = items.length === 0;
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      var term = lastTerm();
      if (term.length < 2) { render([]); return; }
      timer = setTimeout(function () {
        fetch("/cpv?q=" + encodeURIComponent(term), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(render)
          .catch(function () { render([]); });
      }, 200);
    });
    input.addEventListener("keydown", function (event) {
      var options = list.querySelectorAll("li");
      if (list.hidden || !options.length) { return; }
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        active = (active + (event.key === "ArrowDown" ? 1 : -1) + options.length) % options.length;
        options.forEach(function (o, i) { o.setAttribute("aria-selected", i === active ? "true" : "false"); });
        input.setAttribute("aria-activedescendant", options[active].id);
      } else if (event.key === "Enter" && active >= 0) {
        event.preventDefault();
        choose(options[active].textContent.split(" ")[0]);
      } else if (event.key === "Escape") {
        list.hidden = true;
      }
    });
    input.addEventListener("blur", function () { setTimeout(function () { list.hidden = true; }, 150); });
  }
  document.querySelectorAll("input[data-cpv-picker]").forEach(setup);
})();
