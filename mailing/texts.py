"""The words of the public pages, in Swedish and English (the contact's language)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "privacy_title": "Your personal data",
        "privacy_text": "Ask for a copy of the personal data we hold about you, or for its erasure. We send a link to the address to make sure it is yours.",
        "privacy_kind": "What do you want?",
        "privacy_access": "A copy of my data",
        "privacy_erasure": "Erase my data",
        "privacy_button": "Send the link",
        "privacy_sent_title": "Check your inbox",
        "privacy_sent_text": "If we hold data about this address, we have sent it an email with a link. Nothing happens until you open it.",
        "privacy_verify_title": "Confirm your request",
        "privacy_verify_access": "Press the button and we email you a copy of everything we hold about you.",
        "privacy_verify_erasure": "Press the button to ask us to erase your data. We answer within a month; we keep only a coded note that you must never be marketed to again.",
        "privacy_verify_button": "Confirm",
        "privacy_access_sent": "Done: the copy is on its way to your inbox.",
        "privacy_erasure_queued": "Your request is registered. We will answer at the latest on",
        "service": "Email preferences",
        "subscribe_title": "Subscribe",
        "subscribe_intro": "Fill in your email address. We send you an email with a link to confirm.",
        "email": "Email address",
        "name": "Name (optional)",
        "company": "Company (optional)",
        "country": "Country (two letters, optional)",
        "subscribe_button": "Subscribe",
        "honeypot": "Leave this field empty",
        "inbox_title": "Check your inbox",
        "inbox_text": (
            "Thank you. If the address needs to be confirmed, we have sent an email to it. "
            "Open it and follow the link to confirm. Nothing is sent until you do."
        ),
        "confirm_title": "Confirm your subscription",
        "confirm_text": "Press the button to confirm that you want to receive:",
        "confirm_button": "Confirm",
        "confirmed_title": "Subscription confirmed",
        "confirmed_text": "Thank you. You are now subscribed to:",
        "already_title": "Already confirmed",
        "already_text": "This subscription is already confirmed. You need to do nothing more.",
        "expired_title": "This link has expired",
        "expired_text": "Links in our emails work for a limited time. We can send you a new one.",
        "renew_button": "Send me a new link",
        "renewed_title": "A new link is on its way",
        "renewed_text": (
            "If the subscription still waits for confirmation, a new email is on its way. "
            "We send at most one every ten minutes."
        ),
        "invalid_title": "This link does not work",
        "invalid_text": (
            "The link is incomplete, has been changed, or is no longer valid. Nothing was changed. "
            "Copy the whole link from the email, or ask for a new email."
        ),
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_text": "Choose what you want to stop receiving. It takes effect at once.",
        "scope_topic": "Stop sending me {topic}",
        "scope_all": "Stop all marketing email to me",
        "scope_object": ("I object to all direct marketing: never use my data for marketing again"),
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_topic": "You will no longer receive {topic}.",
        "unsubscribed_all": "You will no longer receive marketing email from us.",
        "unsubscribed_object": (
            "Your objection is recorded. We will not use your data for direct marketing."
        ),
        "preferences_link": "Manage all your email preferences",
        "typed_title": "Unsubscribe",
        "typed_text": (
            "Type your email address. We send a link to it, so that only the owner of the "
            "address can unsubscribe."
        ),
        "typed_button": "Send me the link",
        "typed_sent_title": "Check your inbox",
        "typed_sent_text": (
            "If we hold this address, an email with an unsubscribe link is on its way. "
            "We send at most one every ten minutes."
        ),
        "preferences_title": "Your email preferences",
        "preferences_text": "Choose the topics you want to receive by email.",
        "pending": "waiting for your confirmation",
        "save_button": "Save my choices",
        "all_button": "Unsubscribe from all marketing",
        "object_button": "Object to all direct marketing",
        "saved_title": "Your choices are saved",
        "saved_off": "Turned off: {topics}.",
        "saved_on": "We have sent you an email to confirm: {topics}.",
        "saved_nothing": "Nothing needed changing.",
        "one_click_done": "You are unsubscribed.",
        "one_click_invalid": "This unsubscribe link does not work. Nothing was changed.",
        "one_click_body": "The request must contain List-Unsubscribe=One-Click.",
        "skip": "Skip to content",
        "origin_title": "This form cannot be sent from here",
        "origin_text": (
            "To protect the people on our lists, {brand} accepts this form only from the "
            "websites it was made for, and the page you used is not one of them. "
            "Nothing was saved."
        ),
        "unknown_form_title": "This signup form is not in use",
        "unknown_form_text": (
            "{brand} does not recognise the form you filled in, so nothing was saved. "
            "Please let the owner of the website know."
        ),
        "sign_up_here": "You can sign up on our own signup page instead.",
        "rate_limited_title": "Too many attempts",
        "rate_limited_text": (
            "{brand} received many requests from your connection or for this address in a "
            "short time, so this one was not handled and nothing was saved. "
            "Please wait a while and try again."
        ),
        "expired_other_text": (
            "Links in our emails work for a limited time, and this one has run out. "
            "Nothing was changed. You can still unsubscribe: type your address and we "
            "send you a new link."
        ),
        "undo_title": "Undo your subscription",
        "undo_text": (
            "A signup form with your address subscribed you to the following. "
            "Press the button to undo it:"
        ),
        "undo_button": "Undo the subscription",
        "undo_nothing": (
            "There is nothing left to undo: this subscription was already undone, or it has "
            "changed since. You can see and change all your choices on your preferences page."
        ),
        "undone_title": "Subscription undone",
        "undone_text": "Done. You will no longer receive:",
    },
    "sv": {
        "privacy_title": "Dina personuppgifter",
        "privacy_text": "Begär en kopia av de personuppgifter vi har om dig, eller att de raderas. Vi skickar en länk till adressen för att säkerställa att den är din.",
        "privacy_kind": "Vad vill du?",
        "privacy_access": "En kopia av mina uppgifter",
        "privacy_erasure": "Radera mina uppgifter",
        "privacy_button": "Skicka länken",
        "privacy_sent_title": "Titta i din inkorg",
        "privacy_sent_text": "Om vi har uppgifter om den här adressen har vi skickat ett mejl med en länk till den. Ingenting händer förrän du öppnar den.",
        "privacy_verify_title": "Bekräfta din begäran",
        "privacy_verify_access": "Tryck på knappen så mejlar vi dig en kopia av allt vi har om dig.",
        "privacy_verify_erasure": "Tryck på knappen för att be oss radera dina uppgifter. Vi svarar inom en månad; vi sparar bara en kodad notering om att du aldrig ska få marknadsföring igen.",
        "privacy_verify_button": "Bekräfta",
        "privacy_access_sent": "Klart: kopian är på väg till din inkorg.",
        "privacy_erasure_queued": "Din begäran är registrerad. Vi svarar senast",
        "service": "E-postinställningar",
        "subscribe_title": "Prenumerera",
        "subscribe_intro": (
            "Fyll i din e-postadress. Vi skickar ett e-postmeddelande med en länk att bekräfta."
        ),
        "email": "E-postadress",
        "name": "Namn (frivilligt)",
        "company": "Företag (frivilligt)",
        "country": "Land (två bokstäver, frivilligt)",
        "subscribe_button": "Prenumerera",
        "honeypot": "Lämna fältet tomt",
        "inbox_title": "Titta i din inkorg",
        "inbox_text": (
            "Tack. Om adressen behöver bekräftas har vi skickat ett e-postmeddelande till den. "
            "Öppna det och följ länken för att bekräfta. Inget skickas innan du gjort det."
        ),
        "confirm_title": "Bekräfta din prenumeration",
        "confirm_text": "Tryck på knappen för att bekräfta att du vill få:",
        "confirm_button": "Bekräfta",
        "confirmed_title": "Prenumerationen är bekräftad",
        "confirmed_text": "Tack. Du prenumererar nu på:",
        "already_title": "Redan bekräftad",
        "already_text": "Prenumerationen är redan bekräftad. Du behöver inte göra något mer.",
        "expired_title": "Länken har gått ut",
        "expired_text": "Länkarna i våra utskick gäller en begränsad tid. Vi kan skicka en ny.",
        "renew_button": "Skicka en ny länk",
        "renewed_title": "En ny länk är på väg",
        "renewed_text": (
            "Om prenumerationen fortfarande väntar på bekräftelse är ett nytt meddelande på väg. "
            "Vi skickar högst ett var tionde minut."
        ),
        "invalid_title": "Länken fungerar inte",
        "invalid_text": (
            "Länken är ofullständig, har ändrats eller gäller inte längre. Inget har ändrats. "
            "Kopiera hela länken från meddelandet, eller be om ett nytt."
        ),
        "unsubscribe_title": "Avsluta prenumeration",
        "unsubscribe_text": "Välj vad du inte längre vill få. Det gäller direkt.",
        "scope_topic": "Sluta skicka {topic} till mig",
        "scope_all": "Sluta skicka all marknadsföring via e-post till mig",
        "scope_object": (
            "Jag invänder mot all direktmarknadsföring: använd aldrig mina uppgifter för "
            "marknadsföring igen"
        ),
        "unsubscribe_button": "Avsluta",
        "unsubscribed_title": "Du har avslutat prenumerationen",
        "unsubscribed_topic": "Du får inte längre {topic}.",
        "unsubscribed_all": "Du får inte längre marknadsföring via e-post från oss.",
        "unsubscribed_object": (
            "Din invändning är registrerad. Vi använder inte dina uppgifter för "
            "direktmarknadsföring."
        ),
        "preferences_link": "Hantera alla dina e-postinställningar",
        "typed_title": "Avsluta prenumeration",
        "typed_text": (
            "Skriv din e-postadress. Vi skickar en länk till den, så att bara den som äger "
            "adressen kan avsluta."
        ),
        "typed_button": "Skicka länken",
        "typed_sent_title": "Titta i din inkorg",
        "typed_sent_text": (
            "Om vi har adressen är ett meddelande med en avregistreringslänk på väg. "
            "Vi skickar högst ett var tionde minut."
        ),
        "preferences_title": "Dina e-postinställningar",
        "preferences_text": "Välj de ämnen du vill få via e-post.",
        "pending": "väntar på din bekräftelse",
        "save_button": "Spara mina val",
        "all_button": "Avsluta all marknadsföring",
        "object_button": "Invänd mot all direktmarknadsföring",
        "saved_title": "Dina val är sparade",
        "saved_off": "Avslutat: {topics}.",
        "saved_on": "Vi har skickat ett meddelande där du bekräftar: {topics}.",
        "saved_nothing": "Inget behövde ändras.",
        "one_click_done": "Du har avslutat prenumerationen.",
        "one_click_invalid": "Avregistreringslänken fungerar inte. Inget har ändrats.",
        "one_click_body": "Begäran måste innehålla List-Unsubscribe=One-Click.",
        "skip": "Hoppa till innehållet",
        "origin_title": "Formuläret kan inte skickas härifrån",
        "origin_text": (
            "För att skydda dem som finns i våra register tar {brand} bara emot formuläret "
            "från de webbplatser det är gjort för, och sidan du använde är inte en av dem. "
            "Inget har sparats."
        ),
        "unknown_form_title": "Formuläret används inte",
        "unknown_form_text": (
            "{brand} känner inte igen formuläret du fyllde i, så inget har sparats. "
            "Berätta gärna det för den som äger webbplatsen."
        ),
        "sign_up_here": "Du kan anmäla dig på vår egen anmälningssida i stället.",
        "rate_limited_title": "För många försök",
        "rate_limited_text": (
            "{brand} har fått många förfrågningar från din uppkoppling eller för den här "
            "adressen på kort tid, så den här hanterades inte och inget har sparats. "
            "Vänta en stund och försök igen."
        ),
        "expired_other_text": (
            "Länkarna i våra utskick gäller en begränsad tid, och den här har gått ut. "
            "Inget har ändrats. Du kan fortfarande avsluta: skriv din adress så skickar vi "
            "en ny länk."
        ),
        "undo_title": "Ångra din prenumeration",
        "undo_text": (
            "Ett anmälningsformulär med din adress anmälde dig till följande. "
            "Tryck på knappen för att ångra det:"
        ),
        "undo_button": "Ångra prenumerationen",
        "undo_nothing": (
            "Det finns inget kvar att ångra: prenumerationen är redan ångrad eller har ändrats "
            "sedan dess. Du kan se och ändra alla dina val på sidan med dina inställningar."
        ),
        "undone_title": "Prenumerationen är ångrad",
        "undone_text": "Klart. Du får inte längre:",
    },
}


def texts(language: str) -> dict[str, str]:
    return TEXTS.get(language, TEXTS["en"])
